-- Put sold units back on sale, once per move (an order's cancellation, a return).
--
-- KEYS[1]     BASE .. "moves": sorted set, move id -> when it was applied here (ms)
-- KEYS[2..n]  the stock hash of each line's SKU, in the order of the lines
-- ARGV        base, move id, lines as JSON [[sku, location ("" = default), units,
--             location back on sale (the same, or another)], ...],
--             how long an applied move is remembered (ms)
-- Returns     JSON {applied = true} (applied now) or {applied = false} (applied before),
--             or {err = "SOLD_SHORT", sku, location, sold, units}: a line gives back more
--             units than are sold there; nothing changed
--
-- Every line moves `units` from sold at its location to available at its
-- location back on sale (its fourth; the same one without it), all or none. The id is remembered in the shard, so a retried move (a crash after
-- the ledger recorded it, a redelivered event) changes nothing twice.
if not ready(ARGV[1]) then
  return redis.error_reply(NOT_READY)
end
local moves, id = KEYS[1], ARGV[2]
if redis.call('ZSCORE', moves, id) then
  return cjson.encode({applied = false})
end
local lines = cjson.decode(ARGV[3])
for i, line in ipairs(lines) do
  local sold = stock_of(KEYS[i + 1], line[2])[3]
  if sold < line[3] then
    return cjson.encode({err = 'SOLD_SHORT', sku = line[1], location = line[2], sold = sold,
      units = line[3]})
  end
end
for i, line in ipairs(lines) do
  redis.call('HINCRBY', KEYS[i + 1], field('sold', line[2]), -line[3])
  redis.call('HINCRBY', KEYS[i + 1], field('available', line[4] or line[2]), line[3])
end
local now = now_ms()
redis.call('ZADD', moves, now, id)
redis.call('ZREMRANGEBYSCORE', moves, '-inf', now - tonumber(ARGV[4]))
return cjson.encode({applied = true})
