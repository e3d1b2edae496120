-- +goose Up
INSERT INTO orders VALUES (1, 9.99), (2, 19.99);

-- +goose Down
DELETE FROM orders;
