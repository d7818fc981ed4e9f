-- Define, redefine or remove a kit; stamp a shard with the kits' generation.
--
-- The kits live in shard 0: BASE0 .. "kits", a hash kit sku -> JSON
-- {components = {{sku, qty}, ...}, version, updated}. Every shard keeps the
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
--          {err = "COMPONENT", kits = {sku, ...}}: `sku` is a component of these kits

local base, op, sku = ARGV[1], ARGV[2], ARGV[3]
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
if op == 'remove' then
  raise()
  return cjson.encode({gen = gen, removed = redis.call('HDEL', KEYS[1], sku)})
elseif op ~= 'define' then
  return redis.error_reply('unknown kit operation ' .. tostring(op))
end
local components = cjson.decode(ARGV[4])
local nested, users = {}, {}
local kits = redis.call('HGETALL', KEYS[1])
for i = 1, #kits, 2 do
  local other = kits[i]
  if other ~= sku then
    for _, part in ipairs(cjson.decode(kits[i + 1]).components) do
      if part[1] == sku then
        users[#users + 1] = other
        break
      end
    end
  end
end
for _, part in ipairs(components) do
  if redis.call('HEXISTS', KEYS[1], part[1]) == 1 then
    nested[#nested + 1] = part[1]
  end
end
if #nested > 0 then
  return cjson.encode({err = 'NESTED', kits = nested})
elseif #users > 0 then
  table.sort(users)
  return cjson.encode({err = 'COMPONENT', kits = users})
end
local version = tonumber(ARGV[5])
if not version then
  local old = redis.call('HGET', KEYS[1], sku)
  version = old and (cjson.decode(old).version + 1) or 1
end
raise()
redis.call('HSET', KEYS[1], sku,
  cjson.encode({components = components, version = version, updated = now}))
return cjson.encode({gen = gen, version = version, updated = now})
