-- Argo CD health check for blockflow.dev/App and blockflow.dev/Block (Blockflow): both go
-- through the same lifecycle, so one script serves both kinds.
-- Reads status.observedGeneration, status.lifecycle and the kstatus conditions the
-- controller writes; Argo CD passes the resource as `obj`.
local hs = {}

local function condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the controller to observe the " .. obj.kind
  return hs
end

local status = obj.status
local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "waiting for the controller to observe generation " .. tostring(generation)
  return hs
end

local lifecycle = status.lifecycle or {}
local state = lifecycle.status
local description = lifecycle.description or ""
local deleting = obj.metadata.deletionTimestamp ~= nil

if state == "ready" then
  hs.status = "Healthy"
elseif state == "failed" or state == "draining_failed" then
  hs.status = "Degraded"
  if description == "" then
    description = lifecycle.lastError or state
  end
elseif state == "in_progress" or state == "draining" then
  hs.status = "Progressing"
elseif state == "drained" then
  if deleting then
    -- drained while deleting: the finalizer is about to be released
    hs.status = "Progressing"
    description = "drained; being deleted"
  else
    -- drained on request (annotation blockflow.dev/requested-drain-at): offline on purpose
    hs.status = "Suspended"
    if description == "" or description == "Drained" then
      description = "drained on request; annotate blockflow.dev/requested-sync-at to sync again"
    end
  end
else
  -- no lifecycle yet: fall back to the kstatus conditions
  local stalled = condition(status, "Stalled")
  local ready = condition(status, "Ready")
  if stalled ~= nil and stalled.status == "True" then
    hs.status = "Degraded"
    description = stalled.message or ""
  elseif ready ~= nil and ready.status == "True" then
    -- Ready=True with reason Drained: settled, but offline on purpose
    hs.status = ready.reason == "Drained" and "Suspended" or "Healthy"
    description = ready.message or ""
  else
    hs.status = "Progressing"
    if description == "" then
      description = "waiting for the first sync"
    end
  end
end

hs.message = description
return hs
