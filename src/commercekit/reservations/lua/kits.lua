-- Define, redefine or remove a kit; stamp a shard with the kits' generation.
--
-- The kits live in shard 0: BASE0 .. "kits", a hash kit sku -> JSON
-- {components = {{sku, qty}, ...}, version, updated}, and BASE0 .. "kitparts",
-- a hash component sku -> the number of kits it is a component of. Every shard keeps the
-- generation of the kits (BASE .. "kitgen", Redis milliseconds, raised by
-- every change); reserve.lua refuses a cart expanded with an older one.
--
-- KEYS[1]  the kits hash (BASE0 .. "kits"); KEYS[2] this shard's generation
-- ARGV     base, op, sku, components JSON, version
--          op "define": write kit `sku` as `components` with `version` ("" = one
--            more than the kit had, 1 for a new kit) and raise the generation
--          op "remove": delete kit `sku` and raise the generation
--          op "stamp":  raise this shard's generation to ARGV[5] (another shard's
--            change), never lower it
-- Returns  JSON {gen, version, updated} ("define"), {gen, removed = 0 | 1} ("remove"), {gen} ("stamp")
--          or {err = "NESTED", kits = {sku, ...}}: a component is a kit, or
--          {err = "COMPONENT", kits = n}: `sku` is a component of n kits

local base, op, sku = ARGV[1], ARGV[2], ARGV[3]
local parts_key = base .. 'kitparts'
if not ready(base) then
  return redis.error_reply(NOT_READY)
end
local gen = tonumber(redis.call('GET', KEYS[2]) or '0')
if op == 'stamp' then
  gen = math.max(gen, tonumber(ARGV[5]))
  redis.call('SET', KEYS[2], gen)
  return cjson.encode({gen = gen})
end
local now = now_ms()
local function raise()
  gen = math.max(now, gen + 1)
  redis.call('SET', KEYS[2], gen)
end
local old = redis.call('HGET', KEYS[1], sku)
if op == 'remove' then
  raise()
  if old then
    count_parts(base, cjson.decode(old).components, -1)
  end
  return cjson.encode({gen = gen, removed = redis.call('HDEL', KEYS[1], sku)})
elseif op ~= 'define' then
  return redis.error_reply('unknown kit operation ' .. tostring(op))
end
local components = cjson.decode(ARGV[4])
local nested = {}
for _, part in ipairs(components) do
  if redis.call('HEXISTS', KEYS[1], part[1]) == 1 then
    nested[#nested + 1] = part[1]
  end
end
if #nested > 0 then
  return cjson.encode({err = 'NESTED', kits = nested})
end
local used = tonumber(redis.call('HGET', parts_key, sku) or '0')
if used > 0 then
  return cjson.encode({err = 'COMPONENT', kits = used})
end
local version = tonumber(ARGV[5])
if old then
  local before = cjson.decode(old)
  version = version or (before.version + 1)
  count_parts(base, before.components, -1)
end
version = version or 1
count_parts(base, components, 1)
raise()
redis.call('HSET', KEYS[1], sku,
  cjson.encode({components = components, version = version, updated = now}))
return cjson.encode({gen = gen, version = version, updated = now})
