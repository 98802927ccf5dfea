-- Included by ingest.lua and delete.lua: drop document `id`'s reference to chunk `k`; a chunk no document
-- references goes to the gc set (its object is deleted later, under the chunk's lock).
local function release(p, id, k, gcKey, orphans)
  redis.call('SREM', p .. 'refs:' .. k, id)
  if redis.call('SCARD', p .. 'refs:' .. k) == 0 then
    redis.call('SADD', gcKey, k)
    table.insert(orphans, k)
  end
end
