-- Argo CD health of a Kiln ModelVersion (kiln.dev/v1alpha1), from status.phase and its
-- Validated and Ready conditions. Lua 5.1, as Argo CD embeds it.
local hs = {}

local function condition(conditions, type_)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function describe(c, fallback)
  if c == nil then
    return fallback
  end
  -- A message may end in ": " when the operator had no detail to add.
  local message = string.gsub(c.message or "", "[%s:]+$", "")
  if c.reason ~= nil and c.reason ~= "" then
    if message ~= "" then
      return c.reason .. ": " .. message
    end
    return c.reason
  end
  if message ~= "" then
    return message
  end
  return fallback
end

local status = obj.status or {}
local generation = obj.metadata.generation or 0
if status.observedGeneration == nil or status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local validated = condition(status.conditions, "Validated")
local ready = condition(status.conditions, "Ready")

if status.phase == "Ready" then
  hs.status = "Healthy"
  hs.message = describe(validated, describe(ready, "validated; ready to serve"))
  return hs
end
if status.phase == "Failed" then
  hs.status = "Degraded"
  hs.message = describe(validated, describe(ready, "validation failed"))
  return hs
end
hs.status = "Progressing"
if status.phase == "Validating" then
  hs.message = describe(validated, "validating the artifact")
else
  hs.message = describe(validated, "waiting for validation")
end
return hs
