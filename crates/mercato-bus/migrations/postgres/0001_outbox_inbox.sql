-- Events waiting to be published (written in the same transaction as the change they describe).
CREATE TABLE outbox (
    sequence BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id VARCHAR(36) NOT NULL UNIQUE,
    subject VARCHAR(200) NOT NULL,
    aggregate_id VARCHAR(64) NOT NULL,
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    published_at BIGINT
);
-- Partial: published rows leave the index, so finding the next batch stays cheap however
-- long the table grows (a plain index on published_at kept dead entries PostgreSQL had to sort).
CREATE INDEX outbox_unpublished ON outbox (sequence) WHERE published_at IS NULL;

-- Events a consumer has handled, recorded in the same transaction as their effect.
CREATE TABLE inbox (
    consumer VARCHAR(100) NOT NULL,
    event_id VARCHAR(36) NOT NULL,
    handled_at BIGINT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
