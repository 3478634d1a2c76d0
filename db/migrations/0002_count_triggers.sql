-- Triggers that keep event_tickets.sold / reserved / available / version in step with
-- tickets, in the same transaction as the change to tickets.
--
-- Named errors (SQLSTATE, message):
--   MQ001 sold_out                   a hold or sale when nothing is left
--   MQ002 insufficient_availability  a hold or sale larger than what is left
--   MQ003 invalid_transition         e.g. confirming a cancelled reservation
--   MQ004 hold_expired               confirming a hold whose time is up
--   MQ005 immutable_column           changing quantity, ticket type, event or owner
-- The DETAIL of MQ001/MQ002 is 'available=N'.

-- available and version are derived: whatever a statement sets, they follow the counts.
create function event_tickets_derive() returns trigger
language plpgsql as $$
begin
    new.available := new.capacity - new.sold - new.reserved;
    if tg_op = 'UPDATE' then
        new.version := old.version;
        if new.capacity = old.capacity and new.sold = old.sold and new.reserved = old.reserved
           and new.name = old.name and new.price_cents = old.price_cents then
            return new;
        end if;
        new.version := old.version + 1;
        new.updated_at := now();
    end if;
    return new;
end;
$$;

create trigger event_tickets_derive
    before insert or update on event_tickets
    for each row execute function event_tickets_derive();

-- Seats a reservation in a given status holds: (reserved, sold).
create function ticket_seats(status text, quantity integer, out held integer, out sold integer)
language sql immutable as $$
    select case when status = 'reserved' then quantity else 0 end,
           case when status = 'confirmed' then quantity else 0 end
$$;

-- Moves seats on event_tickets by the given deltas. Taking seats is a conditional
-- update: it only succeeds while enough are available, and concurrent buyers queue on
-- the row lock, so the check and the write are one atomic step.
create function event_tickets_move(ticket_type uuid, d_reserved integer, d_sold integer) returns void
language plpgsql as $$
declare
    taking integer := d_reserved + d_sold;
    left_now integer;
begin
    if d_reserved = 0 and d_sold = 0 then
        return;
    end if;
    update event_tickets
       set reserved = reserved + d_reserved, sold = sold + d_sold
     where id = ticket_type and available >= greatest(taking, 0);
    if found then
        return;
    end if;
    -- seats held by holds whose time is up are free: release them and try once more
    if taking > 0 and expire_holds(ticket_type) > 0 then
        update event_tickets
           set reserved = reserved + d_reserved, sold = sold + d_sold
         where id = ticket_type and available >= taking;
        if found then
            return;
        end if;
    end if;
    select available into left_now from event_tickets where id = ticket_type;
    if left_now is null then
        raise exception 'unknown_ticket_type' using errcode = 'MQ006',
            detail = format('ticket type %s does not exist', ticket_type);
    elsif left_now = 0 then
        raise exception 'sold_out' using errcode = 'MQ001',
            detail = 'available=0', hint = 'Nothing is left of this ticket type.';
    else
        raise exception 'insufficient_availability' using errcode = 'MQ002',
            detail = format('available=%s', left_now),
            hint = format('Only %s left; ask for %s or fewer.', left_now, left_now);
    end if;
end;
$$;

-- Validates a change of a reservation before it is written.
create function tickets_validate() returns trigger
language plpgsql as $$
begin
    if tg_op = 'UPDATE' then
        if new.quantity <> old.quantity or new.event_ticket_id <> old.event_ticket_id
           or new.event_id <> old.event_id or new.user_id <> old.user_id then
            raise exception 'immutable_column' using errcode = 'MQ005',
                detail = 'quantity, event_ticket_id, event_id and user_id of a reservation cannot change';
        end if;
        if new.status <> old.status then
            if old.status = 'expired' and new.status = 'confirmed' then
                raise exception 'hold_expired' using errcode = 'MQ004',
                    detail = format('the hold expired at %s', old.hold_expires_at);
            end if;
            if not ((old.status = 'reserved' and new.status in ('confirmed', 'cancelled', 'expired'))
                    or (old.status = 'confirmed' and new.status = 'cancelled')) then
                raise exception 'invalid_transition' using errcode = 'MQ003',
                    detail = format('a %s reservation cannot become %s', old.status, new.status);
            end if;
            if old.status = 'reserved' and new.status = 'confirmed' and old.hold_expires_at <= now() then
                raise exception 'hold_expired' using errcode = 'MQ004',
                    detail = format('the hold expired at %s', old.hold_expires_at);
            end if;
        end if;
        new.updated_at := now();
    end if;
    return new;
end;
$$;

create trigger tickets_validate
    before insert or update on tickets
    for each row execute function tickets_validate();

-- Moves the seats after the row is really written (an INSERT .. ON CONFLICT DO NOTHING
-- that skips its row fires no AFTER trigger, so a retried idempotency key takes nothing).
create function tickets_count() returns trigger
language plpgsql as $$
declare
    before_seats record;
    after_seats record;
begin
    if tg_op = 'INSERT' then
        select * into after_seats from ticket_seats(new.status, new.quantity);
        perform event_tickets_move(new.event_ticket_id, after_seats.held, after_seats.sold);
    elsif tg_op = 'UPDATE' then
        if new.status = old.status then
            return null;
        end if;
        select * into before_seats from ticket_seats(old.status, old.quantity);
        select * into after_seats from ticket_seats(new.status, new.quantity);
        perform event_tickets_move(new.event_ticket_id,
            after_seats.held - before_seats.held, after_seats.sold - before_seats.sold);
    else
        select * into before_seats from ticket_seats(old.status, old.quantity);
        perform event_tickets_move(old.event_ticket_id, -before_seats.held, -before_seats.sold);
    end if;
    return null;
end;
$$;

create trigger tickets_count
    after insert or update or delete on tickets
    for each row execute function tickets_count();

-- Expires every hold whose time is up; returns how many. Called by the sweeper, and by
-- reservations before they give up on a ticket type whose seats are held by stale holds.
create function expire_holds(ticket_type uuid default null) returns integer
language sql as $$
    with expired as (
        update tickets set status = 'expired'
         where status = 'reserved' and hold_expires_at <= now()
           and (ticket_type is null or event_ticket_id = ticket_type)
        returning 1
    )
    select count(*)::integer from expired
$$;

-- Availability as buyers should see it: a hold past its expiry is released even before
-- the sweeper has written that down.
create view event_ticket_availability as
select et.id, et.event_id, et.name, et.price_cents, et.capacity, et.sold,
       et.reserved - coalesce(stale.quantity, 0) as reserved,
       et.available + coalesce(stale.quantity, 0) as available,
       et.version, et.updated_at
  from event_tickets et
  left join lateral (
      select sum(t.quantity)::integer as quantity
        from tickets t
       where t.event_ticket_id = et.id and t.status = 'reserved' and t.hold_expires_at <= now()
  ) stale on true;
