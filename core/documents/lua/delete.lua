-- Remove a document and release its chunk references.
-- KEYS[1] doc hash, KEYS[2] gc set; ARGV[1] key prefix, ARGV[2] document name
-- Returns the JSON list of chunks left unreferenced, or false when the document does not exist.
--- @include release-ref
local p = ARGV[1]
local name = ARGV[2]
local chunks = redis.call('HGET', KEYS[1], 'chunks')
if not chunks then return false end
redis.call('DEL', KEYS[1])
local orphans = {}
local seen = {}
for _, k in ipairs(cjson.decode(chunks)) do
  if not seen[k] then
    seen[k] = true
    release(p, name, k, KEYS[2], orphans)
  end
end
return cjson.encode(orphans)
