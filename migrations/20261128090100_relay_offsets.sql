-- Migration: 20261128090100_relay_offsets
-- The highest offset the broker acknowledged per partition since the topic was last
-- (re)filled. A broker that lost its log holds less than that on some partition; a count
-- of deliveries raced the watermarks and took a healthy broker for an empty one.

CREATE TABLE eventstore.relay_offsets (
    topic      TEXT    NOT NULL,
    partition  INTEGER NOT NULL,
    acked      BIGINT  NOT NULL,
    PRIMARY KEY (topic, partition)
);
