CREATE TABLE applied_log (migration int NOT NULL, applied_by text NOT NULL);
