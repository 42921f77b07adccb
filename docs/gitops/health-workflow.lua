-- Argo CD health check for blockflow.dev/Workflow (Blockflow).
-- status.phase is where the workflow is (Draft, Activated, Triggered, Paused, Archived),
-- status.lifecycle whether its trigger's activation worked; Argo CD passes `obj`.
local hs = {}

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the controller to observe the Workflow"
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
local phase = status.phase
local wanted = (obj.spec or {}).state or "Draft"

if state == "failed" or state == "draining_failed" then
  -- activation refused (the description names the field and the fix) or deactivation failed
  hs.status = "Degraded"
  hs.message = description ~= "" and description or (lifecycle.lastError or state)
  return hs
end

if obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "being deleted" .. (description ~= "" and (": " .. description) or "")
  return hs
end

if state == nil or state == "in_progress" or state == "draining" then
  hs.status = "Progressing"
  hs.message = description ~= "" and description or "activating"
  return hs
end

if phase == "Archived" then
  -- final, never runs again: not broken, but not running either
  hs.status = "Suspended"
  hs.message = "archived"
elseif phase == "Paused" then
  hs.status = "Suspended"
  hs.message = description ~= "" and description or "paused"
elseif phase == "Draft" then
  if wanted == "Active" then
    hs.status = "Progressing"
    hs.message = "activating"
  else
    -- not activated, on purpose
    hs.status = "Suspended"
    hs.message = description ~= "" and description or "draft: not activated"
  end
elseif (phase == "Activated" or phase == "Triggered") and state == "ready" then
  hs.status = "Healthy"
  hs.message = description
  if phase == "Triggered" then
    hs.message = description .. " (runs active)"
  end
else
  hs.status = "Progressing"
  hs.message = "phase " .. tostring(phase) .. ", lifecycle " .. tostring(state)
end
return hs
