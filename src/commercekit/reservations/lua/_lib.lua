-- Helpers shared by every reservation script. The Python loader prepends
-- this file to each script before loading it, so they form one script body.
--
-- Key layout (BASE = "<prefix>:{<shard>}:", one hash tag for a shard, so a
-- script only touches keys of one cluster slot):
--   BASE .. "due"            sorted set: pending reservation id -> deadline (ms)
--   BASE .. "res:" .. id     string: the reservation record as JSON
--   BASE .. "stock:" .. sku  hash: available, held, sold, backorder (the cap of units
--                            held beyond stock) of the default location, and
--                            available@L, held@L, sold@L, backorder@L of each other one;
--                            limit and limit_ms: a purchase limit (units per owner
--                            within limit_ms)
--   BASE .. "idem:" .. hash  string: "<fingerprint>|<reservation id>"
--   BASE .. "hydrated"       string: set once the durable ledger restored this shard
--   BASE .. "usage:" .. sku .. ":" .. owner
--                            hash: reservation id -> "<units>:<made at ms>", the units of
--                            a SKU with a purchase limit an owner holds or bought
--   BASE .. "kitgen"         string: the generation of the kits (see kits.lua)
--   BASE .. "moves"          sorted set: id of a move of sold units back on sale -> when
--                            it was applied (ms), see unsell.lua
--   BASE0 .. "kits"          hash (shard 0 only): kit sku -> its definition as JSON
--   BASE0 .. "kitparts"      hash (shard 0 only): component sku -> kits it is part of
--
-- A record is {v, id, status, owner, lines = {{sku, qty}, ...} (the cart as
-- asked: a kit's line names the kit, its `alloc` the components), created,
-- updated, expires, idem, fp} (and a spread cart's cart, parts, incomplete
-- or parent; `alloc` = {{sku, location, qty[, backordered]}, ...} when the lines were
-- allocated to locations, else every unit is at the default one, and a
-- spread cart's parent keeps the whole cart's in `cart_alloc`); times are
-- Redis server milliseconds, so every replica of every service agrees on one clock. `new_record` makes every record, `save_record`
-- writes every one, `load_record` reads every one.

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

-- The record format these scripts write (field `v`). A record without `v` was
-- written before versions existed: version 0, the same fields. Version 2 adds
-- `alloc`; version 3, a 4th element in an `alloc` entry (its backordered units). A record is stamped with the oldest version that reads it right
-- (1 without `alloc`), so a release that reads only version 1 still handles
-- what needs no more. A script meets a newer record only during a rolling
-- deploy (a newer release wrote it) and leaves it alone: it answers
-- RECORD_VERSION, the caller retries, and the newer release's scripts handle it.
local RECORD_VERSION = 3

local DEFAULT_LOCATION = 'default'

-- The hash field of `name` (available, held, sold) at location `loc`.
local function field(name, loc)
  if loc == nil or loc == '' or loc == DEFAULT_LOCATION then
    return name
  end
  return name .. '@' .. loc
end

local function newer_record(id, v)
  return cjson.encode({err = 'RECORD_VERSION', id = id, v = v, max = RECORD_VERSION})
end

-- A new PENDING record from `f` (what reserve.lua holds, or what the ledger
-- kept, for restore.lua): only the fields a record has, and the version.
local function new_record(f)
  return {
    v = RECORD_VERSION, id = f.id, status = 'PENDING', owner = f.owner, lines = f.lines,
    created = f.created, updated = f.updated or f.created, expires = f.expires,
    idem = f.idem or '', fp = f.fp,
    cart = f.cart, parts = f.parts, incomplete = f.incomplete, parent = f.parent,
    alloc = f.alloc, cart_alloc = f.cart_alloc,
  }
end

-- Write `rec` (kept `retention` ms when given: a settled record; a pending one
-- never expires by itself, only a transition settles it), stamped with the
-- oldest version that reads it right: each version only adds to the last.
local function owes(entries)
  for _, e in ipairs(entries or {}) do
    if e[4] then
      return true
    end
  end
  return false
end

local function save_record(base, rec, retention)
  if owes(rec.alloc) or owes(rec.cart_alloc) then
    rec.v = 3
  else
    rec.v = (rec.alloc or rec.cart_alloc) and 2 or 1
  end
  if retention then
    redis.call('SET', res_key(base, rec.id), cjson.encode(rec), 'PX', retention)
  else
    redis.call('SET', res_key(base, rec.id), cjson.encode(rec))
  end
end

-- The record stored at `key`: nil when there is none; nil and the version when
-- a newer release wrote it.
local function load_record(key)
  local raw = redis.call('GET', key)
  if not raw then
    return nil
  end
  local rec = cjson.decode(raw)
  local v = rec.v or 0
  if v > RECORD_VERSION then
    return nil, v
  end
  return rec
end

-- {available, held, sold, backorder} of a SKU at `loc`; `backorder` is the cap of
-- units that may be held beyond stock there: `available` may go down to -backorder.
local function stock_of(key, loc)
  local v = redis.call('HMGET', key, field('available', loc), field('held', loc), field('sold', loc),
    field('backorder', loc))
  return {tonumber(v[1] or '0'), tonumber(v[2] or '0'), tonumber(v[3] or '0'),
    tonumber(v[4] or '0')}
end

-- An allocation entry: `qty` units of `sku` at `loc`, taken where `available` were
-- available; the units beyond them (backordered) are the entry's 4th element.
local function entry(sku, loc, qty, available)
  local beyond = qty - math.max(0, available)
  if beyond > 0 then
    return {sku, loc, qty, beyond}
  end
  return {sku, loc, qty}
end

-- Where a record's units are: {{sku, location, qty}, ...}.
local function holdings(rec)
  if rec.alloc then
    return rec.alloc
  end
  local out = {}
  for i, line in ipairs(rec.lines) do
    out[i] = {line[1], DEFAULT_LOCATION, line[2]}
  end
  return out
end

-- Move `qty` units of `sku` at `loc` from one bucket (available, held, sold) to another.
local function move(base, sku, loc, qty, from, into)
  local key = stock_key(base, sku)
  redis.call('HINCRBY', key, field(from, loc), -qty)
  redis.call('HINCRBY', key, field(into, loc), qty)
end

local function usage_key(base, sku, owner)
  return base .. 'usage:' .. sku .. ':' .. owner
end

-- The units of the SKU whose usage hash is `key` held or bought since `since` (ms);
-- older entries are deleted.
local function used_since(key, since)
  local entries = redis.call('HGETALL', key)
  local used = 0
  for i = 1, #entries, 2 do
    local value = entries[i + 1]
    local colon = string.find(value, ':', 1, true)
    if tonumber(string.sub(value, colon + 1)) < since then
      redis.call('HDEL', key, entries[i])
    else
      used = used + tonumber(string.sub(value, 1, colon - 1))
    end
  end
  return used
end

-- A hold whose units went back: they no longer count against its owner's limits.
local function forget_usage(base, rec)
  local seen = {}
  for _, h in ipairs(holdings(rec)) do
    if not seen[h[1]] then
      seen[h[1]] = true
      redis.call('HDEL', usage_key(base, h[1], rec.owner), rec.id)
    end
  end
end

-- Move a PENDING record to a terminal status, exactly once: its units go
-- from held to sold (CONFIRMED) or back to available (RELEASED, EXPIRED),
-- each at the location it was allocated from;
-- the record is kept for `retention` ms and leaves the due index.
local function settle(base, due_key, rec, to_status, now, retention)
  local into = 'available'
  if to_status == 'CONFIRMED' then
    into = 'sold'
  end
  for _, h in ipairs(holdings(rec)) do
    move(base, h[1], h[2], h[3], 'held', into)
  end
  if into == 'available' then
    forget_usage(base, rec)
  end
  rec.status = to_status
  rec.updated = now
  save_record(base, rec, retention)
  redis.call('ZREM', due_key, rec.id)
  return rec
end

-- Count `components` ({{sku, qty}, ...}) as parts of one kit more (`delta` 1) or
-- one less (-1) in BASE .. "kitparts", so a kit's SKU is known as a component
-- without reading every kit.
local function count_parts(base, components, delta)
  local key = base .. 'kitparts'
  for _, part in ipairs(components) do
    if redis.call('HINCRBY', key, part[1], delta) <= 0 then
      redis.call('HDEL', key, part[1])
    end
  end
end
