-- Helpers shared by every reservation script. The Python loader prepends
-- this file to each script before loading it, so they form one script body.
--
-- Key layout (BASE = "<prefix>:{<shard>}:", one hash tag for a shard, so a
-- script only touches keys of one cluster slot):
--   BASE .. "due"            sorted set: pending reservation id -> deadline (ms)
--   BASE .. "res:" .. id     string: the reservation record as JSON
--   BASE .. "stock:" .. sku  hash: available, held, sold
--   BASE .. "idem:" .. hash  string: "<fingerprint>|<reservation id>"
--   BASE .. "hydrated"       string: set once the durable ledger restored this shard
--
-- A record is {id, status, owner, lines = {{sku, qty}, ...}, created,
-- updated, expires, idem, fp}; times are Redis server milliseconds, so every
-- replica of every service agrees on one clock.

-- GUARDED is set by the loader: true for a store kept with a durable ledger,
-- which must not act on a Redis that lost its data (flushed, restarted
-- empty) until the ledger has restored it and set BASE .. "hydrated".
local function ready(base)
  return (not GUARDED) or redis.call('EXISTS', base .. 'hydrated') == 1
end

local NOT_READY = 'NOTHYDRATED redis lost its reservation data; restore it from the ledger'

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function stock_key(base, sku)
  return base .. 'stock:' .. sku
end

local function res_key(base, id)
  return base .. 'res:' .. id
end

local function stock_of(key)
  local v = redis.call('HMGET', key, 'available', 'held', 'sold')
  return {tonumber(v[1] or '0'), tonumber(v[2] or '0'), tonumber(v[3] or '0')}
end

-- Move a PENDING record to a terminal status, exactly once: its units go
-- from held to sold (CONFIRMED) or back to available (RELEASED, EXPIRED);
-- the record is kept for `retention` ms and leaves the due index.
local function settle(base, due_key, rec, to_status, now, retention)
  local into = 'available'
  if to_status == 'CONFIRMED' then
    into = 'sold'
  end
  for _, line in ipairs(rec.lines) do
    local key = stock_key(base, line[1])
    redis.call('HINCRBY', key, 'held', -line[2])
    redis.call('HINCRBY', key, into, line[2])
  end
  rec.status = to_status
  rec.updated = now
  redis.call('SET', res_key(base, rec.id), cjson.encode(rec), 'PX', retention)
  redis.call('ZREM', due_key, rec.id)
  return rec
end
