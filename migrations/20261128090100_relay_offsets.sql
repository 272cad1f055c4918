-- Migration: 20261128090100_relay_offsets
-- The highest high watermark the relay has seen per partition since the topic was last
-- (re)filled. A healthy partition's watermark never goes down, so one below what was seen
-- means the broker lost its log. (A count of deliveries compared with the sum of the
-- watermarks raced them and took a healthy broker for an empty one; tansu's acknowledged
-- offsets run ahead of its watermarks by up to a batch, so they cannot be compared either.)

CREATE TABLE eventstore.relay_offsets (
    topic           TEXT    NOT NULL,
    partition       INTEGER NOT NULL,
    high_watermark  BIGINT  NOT NULL,
    PRIMARY KEY (topic, partition)
);
