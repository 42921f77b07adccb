-- Argo CD health check for blockflow.dev/WorkflowRun (Blockflow).
-- status.state: queued, running, waiting, paused, completed, failed, cancelled, terminated;
-- status.steps says which step runs or waits, status.error why the run failed.
local hs = {}

local function step_in(status, wanted)
  if status.steps == nil then
    return nil
  end
  for _, s in ipairs(status.steps) do
    if s.state == wanted then
      return s
    end
  end
  return nil
end

if obj.status == nil or obj.status.state == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the controller to start the run"
  return hs
end

local status = obj.status
local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  -- e.g. spec.cancel set, not yet acted on (runs written before observedGeneration have none)
  hs.status = "Progressing"
  hs.message = "waiting for the controller to observe generation " .. tostring(generation)
  return hs
end

local state = status.state
local err = status.error or {}

if state == "completed" then
  hs.status = "Healthy"
  hs.message = "run completed"
elseif state == "cancelled" then
  hs.status = "Healthy"
  hs.message = "run cancelled" .. (err.message and (": " .. err.message) or "")
elseif state == "failed" or state == "terminated" then
  hs.status = "Degraded"
  -- the controller's message already names the step that failed
  hs.message = err.message or ("run " .. state)
elseif state == "paused" then
  hs.status = "Suspended"
  hs.message = "run paused"
elseif state == "waiting" then
  hs.status = "Progressing"
  local step = step_in(status, "waiting")
  if step == nil then
    hs.message = "run waiting"
  else
    local why = ""
    if step.error ~= nil and step.error.message ~= nil then
      why = " to retry (attempt " .. tostring(step.attempts or 0) .. " failed: " .. step.error.message .. ")"
    elseif step.hookTokenHash ~= nil then
      why = " for a hook"
    elseif step.callbackTokenHash ~= nil then
      why = " for its finish callback"
    end
    if step.wakeAt ~= nil then
      why = " until " .. step.wakeAt .. why
    end
    hs.message = "step " .. step.name .. " is waiting" .. why
  end
elseif state == "running" then
  hs.status = "Progressing"
  local step = step_in(status, "running")
  hs.message = step ~= nil and ("step " .. step.name .. " is running") or "run running"
else
  -- queued, or a state this script does not know yet
  hs.status = "Progressing"
  hs.message = "run " .. state
end
return hs
