-- Migration: 20261206150000_command_owns_its_queues
--
-- The relay vacuums its queue tables itself (command-api/src/relay.rs): a relayed outbox
-- row is deleted, and until a vacuum removes it, the relay's index scan for the oldest
-- rows walks it again on every wake-up. Before PostgreSQL 16's MAINTAIN privilege only a
-- table's owner may VACUUM it, and since the services log in as their own roles
-- (20261130130000) the command API owns none: every one of its vacuums was skipped with a
-- notice ("only table or database owner can vacuum it") and the dead rows waited for
-- autovacuum. The queue tables go to the command API's role, as the tenant schemas went to
-- the projector's; the journal itself (eventstore.events) stays the owner's.
ALTER TABLE eventstore.outbox OWNER TO murima_command;
ALTER TABLE eventstore.case_numbers OWNER TO murima_command;
ALTER TABLE eventstore.relay_state OWNER TO murima_command;
