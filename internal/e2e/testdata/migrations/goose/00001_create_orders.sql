-- +goose Up
CREATE TABLE orders (id bigint PRIMARY KEY, total numeric NOT NULL);

-- +goose Down
DROP TABLE orders;
