-- Retention (`serve --keep-artifacts`): when a worker took a finished build's images to delete
-- them (a lease: another worker takes over a claim left this long), and when they were gone.
-- The record stays; its image answers 410 from then on.
ALTER TABLE builds ADD COLUMN expiring_at TEXT;
ALTER TABLE builds ADD COLUMN expired_at TEXT;
