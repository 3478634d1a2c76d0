-- A cap on the seats one user may hold or buy of one ticket type, enforced in the same
-- transaction as the reservation. A transaction-scoped advisory lock per (user, ticket
-- type) makes concurrent requests of the same user take turns, so the sum cannot race.
--   MQ007 per_user_limit   DETAIL: 'limit=N held=M'

alter table event_tickets add column max_per_user integer not null default 10
    constraint event_tickets_max_per_user_positive check (max_per_user > 0);

create function tickets_per_user_limit() returns trigger
language plpgsql as $$
declare
    cap integer;
    held integer;
begin
    -- buyers' holds are capped; sales written directly as confirmed (a box office, an import) are not
    if new.status <> 'reserved' then
        return null;
    end if;
    perform pg_advisory_xact_lock(hashtext(new.user_id || '/' || new.event_ticket_id::text));
    select max_per_user into cap from event_tickets where id = new.event_ticket_id;
    select coalesce(sum(quantity), 0) into held
      from tickets
     where user_id = new.user_id and event_ticket_id = new.event_ticket_id
       and (status = 'confirmed' or (status = 'reserved' and hold_expires_at > now()));
    if held > cap then
        raise exception 'per_user_limit' using errcode = 'MQ007',
            detail = format('limit=%s held=%s', cap, held - new.quantity),
            hint = format('One person may hold or buy at most %s of this ticket type.', cap);
    end if;
    return null;
end;
$$;

create trigger tickets_per_user_limit
    after insert on tickets
    for each row execute function tickets_per_user_limit();
