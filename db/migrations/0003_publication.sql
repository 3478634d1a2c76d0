-- Change capture: the tables whose changes are streamed to subscribers. REPLICA
-- IDENTITY FULL puts the whole previous row into UPDATE and DELETE records, so
-- subscribers get old_record and filters can match rows that are deleted.
alter table event_tickets replica identity full;
alter table tickets replica identity full;
alter table events replica identity full;

create publication marquee for table events, event_tickets, tickets;
