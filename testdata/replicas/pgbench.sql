-- One pgbench -C transaction for the replica test bed's rolling restart
-- (internal/replicas): a new connection, an insert and a select.
\set n random(1, 1000000)
BEGIN;
INSERT INTO rolling_pgbench (client, n) VALUES (:client_id, :n);
SELECT count(*) FROM rolling_pgbench WHERE client = :client_id;
COMMIT;
