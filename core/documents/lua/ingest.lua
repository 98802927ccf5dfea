-- Store a document's chunk list and take references to its chunks; release the chunks it no longer uses.
-- KEYS[1] doc hash, KEYS[2] gc set, KEYS[3] pending zset, KEYS[4] failed zset,
-- KEYS[5] document list (sorted set), KEYS[6] corpus change log (stream)
-- ARGV[1] key prefix, ARGV[2] document name, ARGV[3] now (ISO), ARGV[4] metadata JSON,
-- ARGV[5] chunk keys JSON (in order), ARGV[6] per chunk [token ids JSON, token count], ARGV[7] fingerprint,
-- ARGV[8] cache salt, ARGV[9] now (ms), ARGV[10] tenant, ARGV[11] document id, ARGV[12] total tokens,
-- ARGV[13] the document's list key (<tenant>/<id>), ARGV[14] change log length kept, ARGV[15] createdAt
-- of a document not indexed yet ('' : now; a rebuild passes its manifest's)
-- Returns {chunks to enqueue as [key, generation] pairs, chunks already ready, chunks left unreferenced},
-- each a JSON list. A chunk that was not pending (new, failed, being deleted, skipped as unreferenced)
-- starts a new generation, so its job id is new too: a finishing job of an old generation never swallows
-- the new one (BullMQ ignores an add whose job id exists).
--- @include release-ref
local p = ARGV[1]
local name = ARGV[2]
local now = ARGV[3]
local newKeys = cjson.decode(ARGV[5])
local toks = cjson.decode(ARGV[6])
local old = redis.call('HGET', KEYS[1], 'chunks')
local created = redis.call('HGET', KEYS[1], 'createdAt')
if not created then created = (ARGV[15] ~= nil and ARGV[15] ~= '') and ARGV[15] or now end
local enqueue = {}
local ready = {}
local seen = {}
for i, k in ipairs(newKeys) do
  redis.call('SADD', p .. 'refs:' .. k, name)
  if not seen[k] then
    seen[k] = true
    local ck = p .. 'chunk:' .. k
    local st = redis.call('HGET', ck, 'state')
    if st == 'ready' then
      table.insert(ready, k)
    elseif st == 'pending' then
      table.insert(enqueue, {k, tonumber(redis.call('HGET', ck, 'gen') or '0')})
    else
      local gen = redis.call('HINCRBY', ck, 'gen', 1)
      redis.call('HSET', ck, 'state', 'pending', 'tokens', toks[i][1], 'ntokens', toks[i][2], 'fp', ARGV[7],
        'salt', ARGV[8], 'updatedAt', now)
      redis.call('HDEL', ck, 'error')
      redis.call('ZADD', KEYS[3], ARGV[9], k)
      redis.call('ZREM', KEYS[4], k)
      table.insert(enqueue, {k, gen})
    end
  end
end
local orphans = {}
if old then
  for _, k in ipairs(cjson.decode(old)) do
    if not seen[k] then
      seen[k] = true
      release(p, name, k, KEYS[2], orphans)
    end
  end
end
redis.call('HSET', KEYS[1], 'id', ARGV[11], 'tenant', ARGV[10], 'chunks', ARGV[5], 'nchunks', #newKeys,
  'ntokens', ARGV[12], 'meta', ARGV[4], 'createdAt', created, 'updatedAt', now)
redis.call('ZADD', KEYS[5], 0, ARGV[13])
redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[14], '*', 'op', 'ingest', 'doc', name)
return {cjson.encode(enqueue), cjson.encode(ready), cjson.encode(orphans)}
