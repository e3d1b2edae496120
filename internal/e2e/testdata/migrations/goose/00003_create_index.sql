-- +goose NO TRANSACTION
-- +goose Up
CREATE INDEX orders_total ON orders (total);

-- +goose Down
DROP INDEX orders_total;
