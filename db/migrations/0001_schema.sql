-- Events, ticket types and reservations. The counts in event_tickets are kept by the
-- triggers in 0002 and guarded here by CHECK constraints, so that no statement, from
-- the API or typed by hand, can oversell.

create table events (
    id uuid primary key default gen_random_uuid(),
    name text not null check (length(btrim(name)) > 0),
    starts_at timestamptz not null,
    venue text not null default '',
    created_at timestamptz not null default now()
);

create table event_tickets (
    id uuid primary key default gen_random_uuid(),
    event_id uuid not null references events (id) on delete cascade,
    name text not null check (length(btrim(name)) > 0),
    price_cents integer not null check (price_cents >= 0),
    capacity integer not null check (capacity >= 0),
    sold integer not null default 0,
    reserved integer not null default 0,
    available integer not null default 0,
    version bigint not null default 1,
    updated_at timestamptz not null default now(),
    constraint event_tickets_sold_nonnegative check (sold >= 0),
    constraint event_tickets_reserved_nonnegative check (reserved >= 0),
    constraint event_tickets_available_nonnegative check (available >= 0),
    constraint event_tickets_counts_add_up check (sold + reserved + available = capacity),
    constraint event_tickets_name_unique unique (event_id, name),
    -- lets tickets reference (ticket type, event) together, so a reservation cannot name
    -- a ticket type of another event
    constraint event_tickets_id_event_unique unique (id, event_id)
);

create index event_tickets_event_id_idx on event_tickets (event_id);

create table tickets (
    id uuid primary key default gen_random_uuid(),
    event_id uuid not null references events (id) on delete cascade,
    event_ticket_id uuid not null,
    user_id text not null check (length(user_id) > 0),
    holder_email text,
    quantity integer not null check (quantity > 0),
    status text not null default 'reserved'
        check (status in ('reserved', 'confirmed', 'cancelled', 'expired')),
    hold_expires_at timestamptz,
    idempotency_key text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint tickets_event_ticket_fk foreign key (event_ticket_id, event_id)
        references event_tickets (id, event_id) on delete cascade,
    constraint tickets_idempotency_unique unique (user_id, idempotency_key),
    constraint tickets_hold_has_expiry check (status <> 'reserved' or hold_expires_at is not null)
);

create index tickets_event_ticket_id_idx on tickets (event_ticket_id);
create index tickets_user_id_idx on tickets (user_id);
create index tickets_open_holds_idx on tickets (hold_expires_at) where status = 'reserved';
