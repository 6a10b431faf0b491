-- Argo CD health of a Kiln TrainingJob (kiln.dev/v1alpha1), from its status conditions.
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

-- Container waiting reasons that keep a run from starting until someone acts.
local stuck = {
  ErrImagePull = true,
  ImagePullBackOff = true,
  InvalidImageName = true,
  ErrImageNeverPull = true,
  CreateContainerConfigError = true,
  CreateContainerError = true,
  RunContainerError = true,
  Unschedulable = true,
}
-- Ready=False reasons that only mean "not there yet".
local waiting = {
  NoRunFinished = true,
  AwaitingRegistration = true,
}

local status = obj.status or {}
local generation = obj.metadata.generation or 0
if status.observedGeneration == nil or status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local ready = condition(status.conditions, "Ready")
local running = condition(status.conditions, "Running")

if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "spec.suspend is true: no new runs start"
  if running ~= nil and running.status == "True" then
    hs.message = hs.message .. "; " .. describe(running, "a run is still active")
  end
  return hs
end

if ready ~= nil and ready.status == "False" and stuck[ready.reason] then
  hs.status = "Degraded"
  hs.message = describe(ready, "a run cannot start")
  return hs
end

if running ~= nil and running.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(running, "a run is in progress")
  return hs
end

if running ~= nil and running.status == "False" and running.reason ~= "NoActiveRun"
    and running.reason ~= "Suspended" then
  -- A run was started and waits for its pod (the stuck reasons were handled above).
  hs.status = "Progressing"
  hs.message = describe(running, "a run is starting")
  return hs
end

if ready == nil or ready.status == "Unknown" then
  hs.status = "Progressing"
  hs.message = describe(ready, "Waiting for the operator to report readiness")
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "the latest run delivered")
  return hs
end

if waiting[ready.reason] then
  hs.status = "Progressing"
  hs.message = describe(ready, "waiting for the first run")
  return hs
end

hs.status = "Degraded"
hs.message = describe(ready, "the latest run failed")
return hs
