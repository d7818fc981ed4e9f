-- Restore a shard from the durable ledger after Redis lost its data.
-- Runs once: the first replica to call it restores, the others see ALREADY.
--
-- KEYS[1]  the due index (BASE .. "due")
-- KEYS[2]  the marker (BASE .. "hydrated")
-- ARGV     base, marker value, stock JSON {{sku, available, held, sold, location,
--          backorder cap}, ...},
--          pending holds JSON {fields, ...} (what `new_record` makes a record
--          of, and `due`: the score in the due index, when not the deadline),
--          idempotency JSON {{key, "<fingerprint>|<id>", ttl ms left}, ...} (without
--          the third element, a key lives the whole idempotency ttl),
--          idempotency ttl ms, kits JSON {{sku, definition JSON}, ...} (shard 0's
--          BASE .. "kits", see kits.lua; "" in the other shards), purchase limits
--          JSON {{sku, limit, window ms}, ...}, usage JSON {{key, reservation id,
--          "<units>:<made at ms>", ttl ms}, ...} (see usage_key in _lib.lua), moves JSON
--          {id, ...}: the moves of sold units back on sale (unsell.lua) the ledger's stock
--          already counts, remembered as applied so that replaying one changes nothing
-- Returns  "RESTORED" or "ALREADY"

local base = ARGV[1]
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 'ALREADY'
end
for _, s in ipairs(cjson.decode(ARGV[3])) do
  local loc = s[5]
  redis.call('HSET', stock_key(base, s[1]), field('available', loc), s[2], field('held', loc), s[3],
    field('sold', loc), s[4])
  if (s[6] or 0) > 0 then
    redis.call('HSET', stock_key(base, s[1]), field('backorder', loc), s[6])
  end
end
for _, f in ipairs(cjson.decode(ARGV[4])) do
  local rec = new_record(f)
  save_record(base, rec)
  redis.call('ZADD', KEYS[1], f.due or rec.expires, rec.id)
end
for _, idem in ipairs(cjson.decode(ARGV[5])) do
  redis.call('SET', idem[1], idem[2], 'PX', tonumber(idem[3] or ARGV[6]))
end
if ARGV[7] ~= '' then
  for _, kit in ipairs(cjson.decode(ARGV[7])) do
    redis.call('HSET', base .. 'kits', kit[1], kit[2])
    count_parts(base, cjson.decode(kit[2]).components, 1)
  end
end
for _, l in ipairs(cjson.decode(ARGV[8] or '[]')) do
  redis.call('HSET', stock_key(base, l[1]), 'limit', l[2], 'limit_ms', l[3])
end
for _, u in ipairs(cjson.decode(ARGV[9] or '[]')) do
  redis.call('HSET', u[1], u[2], u[3])
  redis.call('PEXPIRE', u[1], u[4])
end
local restored_at = now_ms()
for _, id in ipairs(cjson.decode(ARGV[10] or '[]')) do
  redis.call('ZADD', base .. 'moves', restored_at, id)
end
-- A process that read the kits before the loss reads them again.
local gen = tonumber(redis.call('GET', base .. 'kitgen') or '0')
redis.call('SET', base .. 'kitgen', math.max(now_ms(), gen + 1))
redis.call('SET', KEYS[2], ARGV[2])
return 'RESTORED'
