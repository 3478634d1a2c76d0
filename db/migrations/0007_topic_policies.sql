-- Privacy belongs to the topic, and so does the right to send.
--
-- realtime.is_private_topic(topic): a topic that can only be joined with `config.private = true`. A public join of
--   such a name is refused, so a public channel never shares its name (and so its broadcasts or presence) with a
--   private one. Marquee's own private topics are `user:<id>:…`; extend this function to mark others.
-- realtime.can_send(topic, claims, extension): whether a member of the private `topic` may send client messages
--   (`extension` is 'broadcast' or 'presence'), decided once at join and on token refresh, like can_join. Marquee's
--   own topics carry only what the database says: no client may send on them, whatever its role. By default every
--   other private topic lets those who may join it send.
-- The gateway applies the same rule to Marquee's public topics (`event:<id>:availability`, `event:<id>:queue`).

create function realtime.is_own_topic(topic text) returns boolean
language sql immutable as $$
    select topic like 'event:%:availability' or topic like 'event:%:queue' or topic like 'user:%:reservations'
$$;

create function realtime.is_private_topic(topic text) returns boolean
language sql immutable as $$
    select topic like 'user:%'
$$;

create function realtime.can_send(topic text, claims jsonb, extension text default 'broadcast') returns boolean
language sql stable as $$
    select case
        when realtime.is_own_topic(topic) then false
        else coalesce(realtime.can_join(topic, claims), false)
    end
$$;

-- A user's own namespace: `user:<sub>:…` topics (their reservations, and any other channel of theirs, such as a
-- chat between the user's devices) may be joined by that user; everything else private stays closed to users.
create or replace function realtime.can_join(topic text, claims jsonb) returns boolean
language sql stable as $$
    select case
        when claims->>'role' = 'service_role' then true
        when topic like 'user:%' then
            claims->>'role' = 'authenticated'
            and claims->>'sub' is not null
            and starts_with(topic, 'user:' || (claims->>'sub') || ':')
        else false
    end
$$;
