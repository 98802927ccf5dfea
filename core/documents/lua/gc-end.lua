-- After deleting the object: forget the chunk, unless an ingest took it up again meanwhile.
-- KEYS[1] refs set, KEYS[2] chunk hash, KEYS[3] gc set; ARGV[1] chunk key
redis.call('SREM', KEYS[3], ARGV[1])
if redis.call('SCARD', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
