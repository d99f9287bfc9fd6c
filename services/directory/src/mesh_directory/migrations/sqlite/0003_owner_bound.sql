-- Mesh ids are bound to their owner's key (issue 28): only the owner may list a mesh.
-- Listings taken before this check (a hijacker's among them) could live on through
-- refreshes, which do not re-check the token: they go; live publishers list again
-- within a minute (a refresh answers 404, then a full publish).
DELETE FROM listings;
