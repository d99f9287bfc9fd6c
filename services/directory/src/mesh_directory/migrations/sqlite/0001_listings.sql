-- The listings table as the first release created it (IF NOT EXISTS: a database
-- from before migrations were numbered already has it).
CREATE TABLE IF NOT EXISTS listings (
    listing_id   TEXT PRIMARY KEY,
    mesh_id      TEXT NOT NULL,
    name         TEXT NOT NULL,
    region       TEXT NOT NULL,
    models       TEXT NOT NULL,      -- ' served wanted ', space-separated, for the model filter
    body         TEXT NOT NULL,      -- the listing as JSON
    published_at REAL NOT NULL,
    expires_at   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS listings_expiry ON listings (expires_at);
CREATE INDEX IF NOT EXISTS listings_name ON listings (name);
CREATE INDEX IF NOT EXISTS listings_published ON listings (published_at);
