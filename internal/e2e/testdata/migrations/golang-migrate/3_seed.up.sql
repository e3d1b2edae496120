INSERT INTO accounts VALUES (1, 'first@example.com'), (2, 'second@example.com');
INSERT INTO applied_log VALUES (3, current_setting('application_name'));
