-- Broadcast from the database, compatible with Supabase's SQL API: realtime.send() and
-- realtime.broadcast_changes() store messages in realtime.messages; the change feed reads
-- them from the WAL and delivers them to the sockets joined to the topic.

create schema if not exists realtime;

create table realtime.messages (
    id uuid not null default gen_random_uuid(),
    topic text not null,
    extension text not null default 'broadcast',
    event text,
    payload jsonb,
    private boolean not null default true,
    inserted_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (id)
);

create index messages_topic_inserted_at_idx on realtime.messages (topic, inserted_at);
create index messages_inserted_at_idx on realtime.messages (inserted_at);

-- Stores a broadcast for `topic` (without the "realtime:" prefix). Like Supabase's, a
-- failure only warns, so that a broadcast never aborts the transaction that sends it.
create function realtime.send(payload jsonb, event text, topic text, private boolean default true) returns void
language plpgsql as $$
begin
    begin
        insert into realtime.messages (payload, event, topic, private, extension)
        values (payload, event, topic, private, 'broadcast');
    exception when others then
        raise warning 'ErrorSendingBroadcastMessage: %', sqlerrm;
    end;
end;
$$;

-- For row triggers: broadcasts {schema, table, operation, record, old_record} as Supabase does.
create function realtime.broadcast_changes(
    topic_name text, event_name text, operation text, table_name text, table_schema text,
    new record, old record, level text default 'ROW'
) returns void
language plpgsql as $$
declare
    row_data jsonb;
begin
    if level = 'STATEMENT' then
        raise exception 'function can only be triggered for each row, not for each statement';
    end if;
    if operation in ('INSERT', 'UPDATE', 'DELETE') then
        row_data := jsonb_build_object(
            'old_record', case when old is null then null else to_jsonb(old) end,
            'record', case when new is null then null else to_jsonb(new) end,
            'operation', operation, 'table', table_name, 'schema', table_schema);
        perform realtime.send(row_data, event_name, topic_name);
    else
        raise exception 'Unexpected operation type: %', operation;
    end if;
end;
$$;

-- Who may join a private topic, decided once at join (and on token refresh), not per message.
-- `claims` are the verified token's claims (role, sub). Marquee's own private topics:
--   user:<user_id>:reservations   only that user (and the service role)
-- Extend this function (or replace it in a later migration) to open other private topics.
create function realtime.can_join(topic text, claims jsonb) returns boolean
language sql stable as $$
    select case
        when claims->>'role' = 'service_role' then true
        when topic like 'user:%:reservations' then
            claims->>'role' = 'authenticated'
            and claims->>'sub' is not null
            and topic = 'user:' || (claims->>'sub') || ':reservations'
        else false
    end
$$;

-- Removes messages older than the retention, at most `batch` per call; returns how many.
create function realtime.prune_messages(retention interval default interval '3 days', batch integer default 10000)
returns integer
language sql as $$
    with old as (
        select id from realtime.messages where inserted_at < now() - retention
        order by inserted_at limit batch
    ), deleted as (
        delete from realtime.messages m using old where m.id = old.id returning 1
    )
    select count(*)::integer from deleted
$$;

alter publication marquee add table realtime.messages;
