-- One pgbench -C transaction for the replica test bed's rolling restart
-- (internal/replicas): a new connection, an insert and a select in the
-- table pgbench -D table=NAME names.
\set n random(1, 1000000)
BEGIN;
INSERT INTO :table (client, n) VALUES (:client_id, :n);
SELECT count(*) FROM :table WHERE client = :client_id;
COMMIT;
