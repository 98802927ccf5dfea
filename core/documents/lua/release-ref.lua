-- Included by ingest.lua and delete.lua: drop document `name`'s reference to chunk `k`; a chunk no
-- document references goes to the gc set (its object is deleted later, under the chunk's lock).
local function release(p, name, k, gcKey, orphans)
  redis.call('SREM', p .. 'refs:' .. k, name)
  if redis.call('SCARD', p .. 'refs:' .. k) == 0 then
    redis.call('SADD', gcKey, k)
    table.insert(orphans, k)
  end
end
