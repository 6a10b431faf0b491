-- Argo CD health of a Kiln InferenceService (kiln.dev/v1alpha1), from its Ready,
-- Progressing, Degraded and Paused conditions and the rollout in status.canary.
-- Lua 5.1, as Argo CD embeds it.
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

local function rollout(status)
  local canary = status.canary
  if canary == nil then
    return nil
  end
  local step = "step " .. tostring(canary.step or 0)
  local steps = obj.spec ~= nil and obj.spec.rollout ~= nil and obj.spec.rollout.steps or nil
  if steps ~= nil and #steps > 0 then
    step = step .. " of " .. tostring(#steps)
  end
  local text = "canary version " .. tostring(canary.version) .. " at " ..
    tostring(canary.weight or 0) .. "% (" .. step .. ")"
  if status.serving ~= nil then
    text = text .. ", version " .. tostring(status.serving.version) .. " stable"
  end
  return text
end

local status = obj.status or {}
local generation = obj.metadata.generation or 0
if status.observedGeneration == nil or status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local ready = condition(status.conditions, "Ready")
local progressing = condition(status.conditions, "Progressing")
local degraded = condition(status.conditions, "Degraded")
local paused = condition(status.conditions, "Paused")

if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(degraded, "degraded")
  return hs
end

local spec_paused = obj.spec ~= nil and obj.spec.rollout ~= nil and obj.spec.rollout.paused == true
if spec_paused or (paused ~= nil and paused.status == "True") then
  hs.status = "Suspended"
  local where = rollout(status)
  if where ~= nil then
    hs.message = "rollout paused: " .. where
  else
    hs.message = "rollout paused (spec.rollout.paused): no new version rolls out until it is unpaused"
    if status.serving ~= nil then
      hs.message = hs.message .. "; version " .. tostring(status.serving.version) .. " serves"
    end
  end
  return hs
end

if progressing ~= nil and progressing.status == "True" then
  hs.status = "Progressing"
  hs.message = rollout(status) or describe(progressing, "rolling out")
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "serving")
  return hs
end

-- Not serving yet, or the stable pods are not available (yet): problems that need a
-- human are reported through Degraded, handled above.
hs.status = "Progressing"
hs.message = describe(ready, "Waiting for the operator to report readiness")
return hs
