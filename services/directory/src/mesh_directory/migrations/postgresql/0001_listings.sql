-- Listings, replay protection and rate-limit buckets, shared by every directory
-- replica on this database. Times are the database's clock (now()), never a replica's.
CREATE SEQUENCE listing_changes;
CREATE TABLE listings (
    listing_id   text PRIMARY KEY,
    mesh_id      text NOT NULL,
    name         text NOT NULL,
    region       text NOT NULL,
    models       text NOT NULL,         -- ' served wanted ', space-separated, for the model filter
    body         jsonb NOT NULL,
    digest       text NOT NULL,         -- sha256 of the listing's canonical JSON
    seq          bigint NOT NULL,       -- nextval(listing_changes) at each change of content
    published_at timestamptz NOT NULL,  -- when this content was first published
    expires_at   timestamptz NOT NULL
);
CREATE INDEX listings_expiry ON listings (expires_at);
CREATE INDEX listings_name ON listings (name);
CREATE INDEX listings_published ON listings (published_at);
CREATE INDEX listings_seq ON listings (seq);

CREATE TABLE replay_guard (
    public_key text PRIMARY KEY,
    signed_at  bigint NOT NULL,
    signatures text NOT NULL             -- space-separated hex signatures taken at signed_at
);
CREATE INDEX replay_guard_signed ON replay_guard (signed_at);

-- Token buckets (one per client address and kind of request). Unlogged: written on
-- every request, and losing them in a crash only forgives a few requests.
CREATE UNLOGGED TABLE rate_buckets (
    bucket  text PRIMARY KEY,
    tokens  double precision NOT NULL,
    updated double precision NOT NULL,   -- epoch seconds, the database's clock
    granted boolean NOT NULL             -- whether the last request counted here went ahead
);
CREATE INDEX rate_buckets_updated ON rate_buckets (updated);
