-- digest: sha256 of the listing's canonical JSON (an unchanged refresh only extends
-- expires_at); seq: raised on every change of content, so readers notice changes
-- with one cheap query. replay_guard: the newest signature time taken per key, and
-- the signatures taken at that second (replays refused across restarts).
ALTER TABLE listings ADD COLUMN digest TEXT NOT NULL DEFAULT '';
ALTER TABLE listings ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
CREATE INDEX listings_seq ON listings (seq);
CREATE TABLE replay_guard (
    public_key TEXT PRIMARY KEY,
    signed_at  INTEGER NOT NULL,
    signatures TEXT NOT NULL         -- space-separated hex signatures taken at signed_at
);
CREATE INDEX replay_guard_signed ON replay_guard (signed_at);
