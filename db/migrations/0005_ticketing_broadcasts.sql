-- Marquee's own notification triggers, on top of realtime.send():
--   event:<event_id>:availability  (public)  `availability` on every change of a ticket type,
--                                            `status` when it moves between available / few_left / sold_out
--   user:<user_id>:reservations    (private) `created`, `confirmed`, `cancelled`, `expired`,
--                                            and `hold_expiring` shortly before a hold runs out

-- The display rule of the design: sold_out at 0, few_left at max(5, 10% of capacity) or fewer.
create function availability_status(available integer, capacity integer) returns text
language sql immutable as $$
    select case
        when available <= 0 then 'sold_out'
        when available <= greatest(5, capacity / 10) then 'few_left'
        else 'available'
    end
$$;

create function event_tickets_broadcast() returns trigger
language plpgsql as $$
declare
    topic text := 'event:' || new.event_id || ':availability';
    new_status text := availability_status(new.available, new.capacity);
    old_status text;
begin
    perform realtime.send(
        jsonb_build_object(
            'ticket_type_id', new.id, 'event_id', new.event_id, 'name', new.name,
            'capacity', new.capacity, 'sold', new.sold, 'reserved', new.reserved,
            'available', new.available, 'status', new_status, 'version', new.version),
        'availability', topic, false);
    if tg_op = 'UPDATE' then
        old_status := availability_status(old.available, old.capacity);
        if old_status <> new_status then
            perform realtime.send(
                jsonb_build_object(
                    'ticket_type_id', new.id, 'event_id', new.event_id, 'status', new_status,
                    'previous_status', old_status, 'available', new.available, 'version', new.version),
                'status', topic, false);
        end if;
    end if;
    return null;
end;
$$;

create trigger event_tickets_broadcast_insert
    after insert on event_tickets
    for each row execute function event_tickets_broadcast();

create trigger event_tickets_broadcast_update
    after update on event_tickets
    for each row when (old.version is distinct from new.version)
    execute function event_tickets_broadcast();

alter table tickets add column expiry_warning_sent boolean not null default false;

create function tickets_broadcast() returns trigger
language plpgsql as $$
declare
    change text;
begin
    if tg_op = 'INSERT' then
        change := 'created';
    elsif new.status <> old.status then
        change := new.status;
    elsif new.expiry_warning_sent and not old.expiry_warning_sent and new.status = 'reserved' then
        change := 'hold_expiring';
    else
        return null;
    end if;
    perform realtime.send(
        jsonb_build_object(
            'id', new.id, 'event_id', new.event_id, 'ticket_type_id', new.event_ticket_id,
            'quantity', new.quantity, 'status', new.status, 'hold_expires_at', new.hold_expires_at,
            'holder_email', new.holder_email, 'change', change),
        change, 'user:' || new.user_id || ':reservations', true);
    return null;
end;
$$;

create trigger tickets_broadcast
    after insert or update on tickets
    for each row execute function tickets_broadcast();

-- Marks holds that run out within `warn_seconds` (once each); the trigger above sends the warning.
create function warn_expiring_holds(warn_seconds integer) returns integer
language sql as $$
    with warned as (
        update tickets set expiry_warning_sent = true
         where status = 'reserved' and not expiry_warning_sent
           and hold_expires_at > now() and hold_expires_at <= now() + make_interval(secs => warn_seconds)
        returning 1
    )
    select count(*)::integer from warned
$$;
