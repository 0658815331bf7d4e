// The vsteer playground: upload images, compose a job document, follow the job, look at what it made.
// It talks to the API that serves it (same origin) and to the presigned URLs of the results, nothing else.
"use strict";

const KEY_STORAGE = "vsteer.apiKey";
const MAX_SEED = 2 ** 32 - 1;
const $ = (id) => document.getElementById(id);

const state = {
  key: sessionStorage.getItem(KEY_STORAGE) || "",
  assets: [], // {id, name, thumb, role, at, atEdited, weight}
  stored: [], // the tenant's stored directions (GET /v1/directions)
  directions: [], // {id, label, space, strength, frames: [from, to], steps: [from, to]}
  edited: false, // the document was edited by hand: it is sent as it is
  job: null,
  stream: null, // AbortController of the events stream
};

// ---- the API -------------------------------------------------------------------------------------

async function api(method, path, body, headers = {}) {
  const init = { method, headers: { Authorization: `Bearer ${state.key}`, ...headers } };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (_) {
    data = { title: text };
  }
  if (!response.ok) {
    const error = new Error((data && (data.detail || data.title)) || `HTTP ${response.status}`);
    error.status = response.status;
    error.problem = data;
    throw error;
  }
  return data;
}

// ---- the key -------------------------------------------------------------------------------------

function showKeyState() {
  $("key-state").textContent = state.key ? "key set for this tab" : "no key";
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.key = $("api-key").value.trim();
  sessionStorage.setItem(KEY_STORAGE, state.key);
  showKeyState();
  loadHistory();
  loadLibrary();
  loadDirections();
});

// ---- images --------------------------------------------------------------------------------------

async function upload(files) {
  for (const file of files) {
    $("upload-state").textContent = `uploading ${file.name}…`;
    const form = new FormData();
    form.append("file", file, file.name);
    try {
      const asset = await api("POST", "/v1/assets", form);
      const keyframes = state.assets.filter((a) => a.role === "keyframe").length;
      state.assets.push({
        id: asset.id,
        name: file.name,
        size: asset.width && asset.height ? `${asset.width}×${asset.height}` : "",
        thumb: URL.createObjectURL(file),
        role: keyframes < 2 ? "keyframe" : "reference",
        at: 0,
        atEdited: false,
        weight: 0.5,
      });
      $("upload-state").textContent = `uploaded ${file.name} as asset:${asset.id}`;
    } catch (error) {
      $("upload-state").textContent = `${file.name}: ${error.message}`;
    }
  }
  renderAssets();
  syncDoc();
  loadLibrary();
}

// The tenant's uploads (GET /v1/assets), newest first: any of them can join the job.
async function loadLibrary() {
  if (!state.key) return;
  const list = $("library");
  try {
    const page = await api("GET", "/v1/assets?limit=50");
    const images = page.items.filter((asset) => asset.kind === "image");
    $("library-count").textContent = `(${images.length}${page.next_cursor ? "+" : ""})`;
    list.replaceChildren();
    for (const asset of images) {
      const use = el("button", { type: "button", textContent: "use" });
      use.disabled = state.assets.some((a) => a.id === asset.id);
      use.addEventListener("click", () => {
        state.assets.push({
          id: asset.id,
          name: asset.id,
          size: asset.width && asset.height ? `${asset.width}×${asset.height}` : "",
          thumb: null,
          role: "none",
          at: 0,
          atEdited: false,
          weight: 0.5,
        });
        use.disabled = true;
        renderAssets();
        syncDoc();
      });
      const when = new Date(asset.created_at).toLocaleString();
      const size = asset.width ? ` ${asset.width}×${asset.height}` : "";
      const item = el("li", {}, [use, el("code", { textContent: asset.id }), el("span", { className: "muted", textContent: `${size} · ${when}` })]);
      item.dataset.assetId = asset.id;
      list.append(item);
    }
  } catch (error) {
    list.replaceChildren(el("li", { textContent: `assets: ${error.message}` }));
  }
}

$("file-input").addEventListener("change", (event) => {
  upload([...event.target.files]);
  event.target.value = "";
});
const drop = $("drop");
drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  upload([...event.dataTransfer.files].filter((f) => f.type.startsWith("image/")));
});

// Keyframes not placed by hand are spread evenly over the clip, in upload order.
function spreadKeyframes() {
  const keyframes = state.assets.filter((a) => a.role === "keyframe");
  keyframes.forEach((a, i) => {
    if (!a.atEdited) a.at = keyframes.length > 1 ? Math.round((i / (keyframes.length - 1)) * 1000) / 1000 : 0;
  });
}

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const child of children) node.append(child);
  return node;
}

function renderAssets() {
  spreadKeyframes();
  const list = $("assets");
  list.replaceChildren();
  state.assets.forEach((asset, index) => {
    const role = el("select", { className: "role" });
    for (const [value, label] of [
      ["keyframe", "keyframe"],
      ["reference", "reference"],
      ["negative", "negative image"],
      ["style", "style image"],
      ["none", "not used"],
    ]) {
      role.append(el("option", { value, textContent: label, selected: asset.role === value }));
    }
    role.addEventListener("change", () => {
      asset.role = role.value;
      if (role.value === "negative" || role.value === "style") {
        for (const other of state.assets) if (other !== asset && other.role === role.value) other.role = "none";
      }
      renderAssets();
      syncDoc();
    });
    const at = el("input", { type: "number", min: 0, max: 1, step: 0.05, value: asset.at, className: "at" });
    at.dataset.field = `keyframes[${keyframeIndex(asset)}].at`;
    at.addEventListener("input", () => {
      asset.at = Number(at.value);
      asset.atEdited = true;
      syncDoc();
    });
    const weight = el("input", { type: "range", min: 0, max: 2, step: 0.05, value: asset.weight, className: "weight" });
    const weightOut = el("output", { textContent: asset.weight });
    weight.addEventListener("input", () => {
      asset.weight = Number(weight.value);
      weightOut.textContent = weight.value;
      syncDoc();
    });
    const remove = el("button", { type: "button", textContent: "×", title: "leave out" });
    remove.addEventListener("click", () => {
      state.assets.splice(index, 1);
      renderAssets();
      syncDoc();
      loadLibrary();
    });
    const controls = [role];
    if (asset.role === "keyframe") controls.push(el("label", { textContent: "at " }, [at]));
    if (asset.role === "reference") controls.push(el("label", { textContent: "weight " }, [weight, weightOut]));
    const item = el("li", { className: "asset" }, [
      asset.thumb
        ? el("img", { src: asset.thumb, alt: asset.name, title: `asset:${asset.id}` })
        : el("span", { className: "no-thumb", title: `asset:${asset.id}` }),
      el("div", {}, [el("code", { textContent: asset.id }), el("span", { className: "muted", textContent: ` ${asset.size}` })]),
      ...controls,
      remove,
    ]);
    item.dataset.assetId = asset.id;
    list.append(item);
  });
}

function keyframeIndex(asset) {
  return state.assets.filter((a) => a.role === "keyframe").indexOf(asset);
}

// ---- directions ----------------------------------------------------------------------------------

async function loadDirections() {
  if (!state.key) return;
  const pick = $("direction-pick");
  try {
    const page = await api("GET", "/v1/directions");
    state.stored = page.items;
    pick.replaceChildren(el("option", { value: "", textContent: `stored directions (${page.items.length})…` }));
    for (const d of page.items) {
      const label = `${d.name || d.id} (${d.model}, ${d.space})`;
      pick.append(el("option", { value: d.id, textContent: label }));
    }
  } catch (error) {
    pick.replaceChildren(el("option", { value: "", textContent: `directions: ${error.message}` }));
  }
}

$("direction-add").addEventListener("click", () => {
  const stored = state.stored.find((d) => d.id === $("direction-pick").value);
  if (!stored) return;
  const label = stored.name || stored.id;
  state.directions.push({ id: stored.id, label, space: stored.space, strength: 1, frames: [0, 1], steps: [0, 1] });
  renderDirections();
  syncDoc();
});

// A direction from words: a `text` fit (POST /v1/directions) on the default model, followed to its end,
// then stored like any direction and added to the job.
async function fitFromWords() {
  const text = $("fit-text").value.trim();
  const fromText = $("fit-from-text").value.trim();
  const status = $("fit-state");
  if (!text) {
    status.textContent = "give the words to move toward";
    return;
  }
  $("fit-text-button").disabled = true;
  try {
    const models = await api("GET", "/v1/models");
    const model = models.items.find((m) => m.default) || models.items[0];
    if (!model || !model.text_encoder) throw new Error(`model ${model ? model.name : "?"} has no text encoder`);
    const body = { method: "text", model: model.name, text, name: text };
    if (fromText) body.from_text = fromText;
    status.textContent = "fitting…";
    let fit = await api("POST", "/v1/directions", body);
    while (!["succeeded", "failed", "canceled"].includes(fit.status)) {
      await new Promise((resolve) => setTimeout(resolve, 300));
      fit = await api("GET", `/v1/directions/fits/${fit.id}`);
    }
    if (fit.status !== "succeeded") throw new Error((fit.error && fit.error.detail) || `the fit ${fit.status}`);
    const made = fit.directions[0];
    await loadDirections();
    const label = made.name || made.id;
    state.directions.push({ id: made.id, label, space: made.space, strength: 1, frames: [0, 1], steps: [0, 1] });
    renderDirections();
    syncDoc();
    status.textContent = `“${made.name || made.id}” stored and added`;
  } catch (error) {
    status.textContent = `no direction: ${error.message}`;
  } finally {
    $("fit-text-button").disabled = false;
  }
}

$("fit-text-button").addEventListener("click", fitFromWords);

function windowInputs(direction, key, index) {
  const inputs = [0, 1].map((end) => {
    const input = el("input", { type: "number", min: 0, max: 1, step: 0.05, value: direction[key][end] });
    input.dataset.field = `directions[${index}].${key}`;
    input.addEventListener("input", () => {
      direction[key][end] = Number(input.value);
      syncDoc();
    });
    return input;
  });
  return el("label", { textContent: `${key} ` }, [inputs[0], " – ", inputs[1]]);
}

function renderDirections() {
  const list = $("directions");
  list.replaceChildren();
  state.directions.forEach((direction, index) => {
    const strength = el("input", { type: "range", min: -3, max: 3, step: 0.05, value: direction.strength });
    strength.dataset.field = `directions[${index}].strength`;
    const shown = el("output", { textContent: direction.strength });
    strength.addEventListener("input", () => {
      direction.strength = Number(strength.value);
      shown.textContent = strength.value;
      syncDoc();
    });
    const remove = el("button", { type: "button", textContent: "×", title: "leave out" });
    remove.addEventListener("click", () => {
      state.directions.splice(index, 1);
      renderDirections();
      syncDoc();
    });
    const parts = [
      el("code", { textContent: direction.label, title: direction.id }),
      el("span", { className: "muted", textContent: direction.space }),
      el("label", { textContent: "strength " }, [strength, shown]),
      windowInputs(direction, "frames", index),
    ];
    if (direction.space === "latent") parts.push(windowInputs(direction, "steps", index));
    const item = el("li", { className: "direction" }, [...parts, remove]);
    item.dataset.directionId = direction.id;
    list.append(item);
  });
}

const wholeWindow = (w) => w[0] === 0 && w[1] === 1;

// ---- controls → document -------------------------------------------------------------------------

const num = (id) => Number($(id).value);

function buildDoc() {
  const doc = {};
  if ($("seed").value !== "") doc.seed = num("seed");
  const keyframes = state.assets.filter((a) => a.role === "keyframe");
  if (keyframes.length === 1) doc.image = `asset:${keyframes[0].id}`;
  if (keyframes.length > 1) {
    doc.keyframes = keyframes.map((a) => ({ image: `asset:${a.id}`, at: a.at }));
    doc.interpolation = $("interpolation").value;
  }
  const references = state.assets.filter((a) => a.role === "reference");
  if (references.length) doc.references = references.map((a) => ({ image: `asset:${a.id}`, weight: a.weight }));
  const negative = state.assets.find((a) => a.role === "negative");
  if (negative) doc.negative_image = `asset:${negative.id}`;
  const style = state.assets.find((a) => a.role === "style");
  if (style) doc.style = { image: `asset:${style.id}`, strength: num("style-strength") };
  if ($("variation-on").checked) doc.variation = { seed: num("variation-seed"), strength: num("variation-strength") };
  doc.generation = {
    num_frames: num("frames"),
    width: num("width"),
    height: num("height"),
    steps: num("steps"),
    fps: num("fps"),
    motion_bucket_id: num("motion-bucket"),
    guidance: { min: num("guidance-min"), max: num("guidance-max"), shape: $("guidance-shape").value },
  };
  if (num("sweep-count") > 0) doc.sweep = { target: "seed", to: num("sweep-to"), count: num("sweep-count") };
  if (state.directions.length) {
    doc.directions = state.directions.map((d) => {
      const out = { source: { id: d.id }, space: d.space, strength: d.strength };
      if (!wholeWindow(d.frames)) out.frames = [...d.frames];
      if (d.space === "latent" && !wholeWindow(d.steps)) out.steps = [...d.steps];
      return out;
    });
  }
  return doc;
}

function syncDoc() {
  for (const output of document.querySelectorAll("output[for]")) output.textContent = $(output.htmlFor).value;
  $("doc").value = JSON.stringify(buildDoc(), null, 2);
  state.edited = false;
}

for (const control of document.querySelectorAll("#compose-panel .grid input, #compose-panel .grid select")) {
  control.addEventListener("input", syncDoc);
}
$("doc").addEventListener("input", () => {
  state.edited = true;
});

// A document's controls, where it has them: a re-opened job fills what the controls can show.
function loadControls(doc) {
  const gen = doc.generation || {};
  const set = (id, value) => {
    if (value !== undefined && value !== null) $(id).value = value;
  };
  set("seed", doc.seed);
  set("interpolation", doc.interpolation);
  set("frames", gen.num_frames);
  set("width", gen.width);
  set("height", gen.height);
  set("steps", gen.steps);
  set("fps", gen.fps);
  set("motion-bucket", gen.motion_bucket_id);
  const guidance = gen.guidance || {};
  set("guidance-min", guidance.min);
  set("guidance-max", guidance.max);
  set("guidance-shape", guidance.shape);
  $("variation-on").checked = Boolean(doc.variation);
  if (doc.variation) {
    set("variation-seed", doc.variation.seed);
    set("variation-strength", doc.variation.strength);
  }
  if (doc.style) set("style-strength", doc.style.strength);
  set("sweep-count", doc.sweep && doc.sweep.target === "seed" ? doc.sweep.count : 0);
  if (doc.sweep && doc.sweep.target === "seed") set("sweep-to", doc.sweep.to);
  // Stored directions come back as controls; inline vectors stay in the document only.
  state.directions = (doc.directions || [])
    .filter((d) => d.source && d.source.id)
    .map((d) => {
      const stored = state.stored.find((s) => s.id === d.source.id);
      return {
        id: d.source.id,
        label: (stored && stored.name) || d.source.id,
        space: d.space || "embedding",
        strength: typeof d.strength === "number" ? d.strength : 1,
        frames: d.frames ? [...d.frames] : [0, 1],
        steps: d.steps ? [...d.steps] : [0, 1],
      };
    });
  renderDirections();
}

// ---- 422: the field and its rule -----------------------------------------------------------------

function clearErrors() {
  $("errors").replaceChildren();
  for (const node of document.querySelectorAll(".invalid")) {
    node.classList.remove("invalid");
    node.removeAttribute("title");
  }
}

// The control of a field, or of the nearest field above it; the document itself when none has one.
function controlFor(field) {
  let path = field;
  while (path) {
    const control = document.querySelector(`[data-field="${CSS.escape(path)}"]`);
    if (control) return control;
    path = path.includes(".") ? path.slice(0, path.lastIndexOf(".")) : "";
  }
  return $("doc");
}

function showProblem(problem) {
  clearErrors();
  const errors = problem && problem.errors && problem.errors.length ? problem.errors : null;
  if (!errors) {
    const text = problem ? `${problem.title || "Error"}: ${problem.detail || ""}` : "request failed";
    $("errors").append(el("li", { textContent: text }));
    return;
  }
  for (const error of errors) {
    const control = controlFor(error.field);
    control.classList.add("invalid");
    control.title = `${error.rule}: ${error.message}`;
    const item = el("li", {}, [
      el("code", { className: "field", textContent: error.field || "(document)" }),
      " ",
      el("span", { className: "rule", textContent: error.rule }),
      ` ${error.message}`,
    ]);
    item.dataset.field = error.field;
    $("errors").append(item);
  }
}

// ---- submit, follow, cancel ----------------------------------------------------------------------

$("submit").addEventListener("click", async () => {
  clearErrors();
  if (!$("seed-lock").checked) {
    $("seed").value = Math.floor(Math.random() * MAX_SEED);
    if (!state.edited) syncDoc();
  } else if ($("seed").value === "" && !state.edited) {
    $("seed").value = Math.floor(Math.random() * MAX_SEED);
    syncDoc();
  }
  let doc;
  try {
    doc = JSON.parse($("doc").value);
  } catch (error) {
    showProblem({ title: "The document is not JSON", detail: error.message });
    $("doc").classList.add("invalid");
    return;
  }
  try {
    const job = await api("POST", "/v1/jobs", doc);
    clearPreview();
    showJob(job);
    follow(job.id);
  } catch (error) {
    showProblem(error.problem);
  }
});

$("cancel").addEventListener("click", async () => {
  if (!state.job) return;
  try {
    showJob(await api("POST", `/v1/jobs/${state.job.id}/cancel`));
  } catch (error) {
    $("job-state").textContent = error.message;
  }
});

function showProgress(progress) {
  if (!progress) return;
  const percent = typeof progress.percent === "number" ? progress.percent : 100 * (progress.fraction || 0);
  $("progress").value = percent;
  $("progress-text").textContent =
    `${progress.stage} ${progress.step}/${progress.total}` + ` (${percent.toFixed(1)}%)`;
}

// A live preview: the denoised estimate of a few frames, every few steps (SSE `preview` events).
function showPreview(preview) {
  if (!preview) return;
  const box = $("live-box");
  $("live-preview").src = preview.image;
  $("live-caption").textContent = `live preview: denoised estimate after step ${preview.step}/${preview.total}`;
  box.dataset.count = String(Number(box.dataset.count || 0) + 1);
  box.hidden = false;
}

function clearPreview() {
  const box = $("live-box");
  box.hidden = true;
  box.dataset.count = "0";
  $("live-preview").removeAttribute("src");
}

function showJob(job) {
  state.job = job;
  const terminal = ["succeeded", "failed", "canceled"].includes(job.status);
  $("cancel").disabled = terminal;
  let text = `${job.id}: ${job.status}`;
  if (job.status === "queued" && typeof job.queue_position === "number") text += ` (position ${job.queue_position})`;
  if (job.error) text += ` (${job.error.title}: ${job.error.detail || ""})`;
  $("job-state").textContent = text;
  $("job-state").dataset.status = job.status;
  showProgress(job.progress);
  if (job.status === "running") showPreview(job.preview);
  if (job.status === "succeeded") {
    $("progress").value = 100;
    showResult(job);
    loadHistory();
  }
}

// Server-sent events read with fetch: an EventSource cannot send the Authorization header.
async function follow(jobId) {
  if (state.stream) state.stream.abort();
  const controller = new AbortController();
  state.stream = controller;
  let lastEventId = null;
  let status = null;
  for (let attempt = 0; attempt < 20 && !controller.signal.aborted; attempt++) {
    const headers = { Authorization: `Bearer ${state.key}`, Accept: "text/event-stream" };
    if (lastEventId) headers["Last-Event-ID"] = lastEventId;
    try {
      const response = await fetch(`/v1/jobs/${jobId}/events`, { headers, signal: controller.signal });
      if (!response.ok) throw new Error(`events: HTTP ${response.status}`);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = parseEvent(block);
          if (!event) continue;
          if (event.id) lastEventId = event.id;
          if (event.type === "job") {
            const job = JSON.parse(event.data);
            status = job.status;
            showJob(job);
          } else if (event.type === "progress") {
            showProgress(JSON.parse(event.data));
          } else if (event.type === "preview") {
            showPreview(JSON.parse(event.data));
          }
        }
        if (["succeeded", "failed", "canceled"].includes(status)) {
          controller.abort();
          return;
        }
      }
    } catch (error) {
      if (controller.signal.aborted) return;
      $("progress-text").textContent = `${error.message}; reconnecting…`;
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

function parseEvent(block) {
  const event = { id: null, type: "message", data: "" };
  let seen = false;
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (name === "id") event.id = value;
    else if (name === "event") event.type = value;
    else if (name === "data") event.data += (event.data ? "\n" : "") + value;
    seen = true;
  }
  return seen ? event : null;
}

// ---- the result ----------------------------------------------------------------------------------

async function showResult(job) {
  const result = job.result || {};
  $("result-state").textContent = `${job.id}, seed ${job.request.seed}`;
  const video = $("video");
  if (result.video) {
    video.hidden = false;
    video.src = result.video.url;
    video.play().catch(() => {});
  }
  if (result.poster) {
    $("poster").src = result.poster.url;
    $("poster-box").hidden = false;
  }
  if (result.preview) {
    $("result-preview").src = result.preview.url;
    $("preview-box").hidden = false;
  }
  showClips(result.clips || []);
  $("manifest").textContent = "";
  $("chart").replaceChildren();
  if (!result.manifest) return;
  try {
    const response = await fetch(result.manifest.url);
    const manifest = await response.json();
    $("manifest").textContent = JSON.stringify(manifest, null, 2);
    state.audits = [].concat((manifest.metrics && manifest.metrics.audit) || []);
    drawAudit(state.audits[0]);
  } catch (error) {
    $("manifest").textContent = `manifest: ${error.message}`;
  }
}

// One video per clip, all loaded at once, so the slider shows another clip without waiting.
function showClips(clips) {
  const box = $("clips");
  box.replaceChildren();
  $("clips-box").hidden = clips.length === 0;
  clips.forEach((clip, i) => {
    const video = el("video", { src: clip.url, controls: true, loop: true, muted: true, preload: "auto", className: "clip" });
    video.playsInline = true;
    video.hidden = i !== 0;
    box.append(video);
  });
  const slider = $("clip-slider");
  slider.max = Math.max(0, clips.length - 1);
  slider.value = 0;
  $("clip-index").textContent = "0";
}

$("clip-slider").addEventListener("input", () => {
  const k = Number($("clip-slider").value);
  $("clip-index").textContent = String(k);
  const videos = [...document.querySelectorAll("#clips video")];
  const time = videos.find((v) => !v.hidden)?.currentTime || 0;
  videos.forEach((video, i) => {
    video.hidden = i !== k;
    if (i === k) {
      video.currentTime = time;
      video.play().catch(() => {});
    } else {
      video.pause();
    }
  });
  if (state.audits && state.audits[k]) drawAudit(state.audits[k]);
});

// Frame difference and warp error per transition (frame f-1 → f), flagged frames marked, as inline SVG.
function drawAudit(audit) {
  const chart = $("chart");
  chart.replaceChildren();
  if (!audit) return;
  const series = [
    { name: "frame difference", values: audit.frame_diff || [], color: "#2a6fdb" },
    { name: "warp error", values: audit.warp_error || [], color: "#e08a00" },
  ];
  const frames = audit.num_frames || (series[0].values.length + 1);
  const width = 360;
  const height = 160;
  const pad = 28;
  const top = Math.max(1e-9, ...series.flatMap((s) => s.values));
  const x = (frame) => pad + ((width - 2 * pad) * frame) / Math.max(1, frames - 1);
  const y = (value) => height - pad - ((height - 2 * pad) * value) / top;
  // Markup parsed by the HTML parser, which puts <svg> in its namespace; every value is a number or our text.
  const parts = [];
  const escape = (text) => String(text).replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
  const add = (tag, attributes, text) => {
    const attrs = Object.entries(attributes).map(([name, value]) => ` ${name}="${escape(value)}"`).join("");
    parts.push(text === undefined ? `<${tag}${attrs}/>` : `<${tag}${attrs}>${escape(text)}</${tag}>`);
  };
  for (const frame of audit.flagged_frames || []) {
    add("rect", { x: x(frame) - 4, y: pad, width: 8, height: height - 2 * pad, fill: "#e33", opacity: 0.3, class: "flagged" });
  }
  add("line", { x1: pad, y1: height - pad, x2: width - pad, y2: height - pad, stroke: "#888" });
  add("line", { x1: pad, y1: pad, x2: pad, y2: height - pad, stroke: "#888" });
  add("text", { x: 2, y: pad - 8, "font-size": 10 }, top.toPrecision(3));
  add("text", { x: pad, y: height - 8, "font-size": 10 }, "frame 0");
  add("text", { x: width - pad - 40, y: height - 8, "font-size": 10 }, `frame ${frames - 1}`);
  series.forEach((s, k) => {
    // Transition t is between frames t and t+1: drawn at frame t+1.
    const points = s.values.map((value, t) => `${x(t + 1)},${y(value)}`).join(" ");
    add("polyline", { points, fill: "none", stroke: s.color, "stroke-width": 2, class: "series" });
    add("text", { x: width - pad - 110, y: 12 + 12 * k, "font-size": 10, fill: s.color }, s.name);
  });
  chart.innerHTML = `<svg viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" role="img">${parts.join("")}</svg>`;
}

// ---- earlier jobs --------------------------------------------------------------------------------

async function loadHistory() {
  if (!state.key) return;
  const list = $("history");
  try {
    const page = await api("GET", "/v1/jobs?limit=20");
    list.replaceChildren();
    for (const job of page.items) {
      const poster = job.result && job.result.poster;
      const reopen = el("button", { type: "button", textContent: "open as new document" });
      reopen.addEventListener("click", () => reopenJob(job));
      const view = el("button", { type: "button", textContent: "show" });
      view.addEventListener("click", () => {
        showJob(job);
        if (job.status !== "succeeded" && !["failed", "canceled"].includes(job.status)) follow(job.id);
      });
      const item = el("li", { className: "job" }, [
        poster ? el("img", { src: poster.url, alt: `poster of ${job.id}` }) : el("span", { className: "no-poster" }),
        el("div", {}, [
          el("code", { textContent: job.id }),
          el("div", { className: "muted", textContent: `${job.status} · ${new Date(job.created_at).toLocaleString()}` }),
          view,
          reopen,
        ]),
      ]);
      item.dataset.jobId = job.id;
      list.append(item);
    }
  } catch (error) {
    list.replaceChildren(el("li", { textContent: `jobs: ${error.message}` }));
  }
}

function reopenJob(job) {
  const doc = JSON.parse(JSON.stringify(job.request));
  loadControls(doc);
  $("seed-lock").checked = true;
  $("doc").value = JSON.stringify(doc, null, 2);
  state.edited = true;
  clearErrors();
}

$("refresh-history").addEventListener("click", loadHistory);

// ---- start ---------------------------------------------------------------------------------------

async function openFromHash() {
  const match = /job=([A-Za-z0-9_-]+)/.exec(location.hash);
  if (!match || !state.key) return;
  try {
    const job = await api("GET", `/v1/jobs/${match[1]}`);
    showJob(job);
    if (!["succeeded", "failed", "canceled"].includes(job.status)) follow(job.id);
  } catch (error) {
    $("job-state").textContent = error.message;
  }
}

$("api-key").value = state.key;
showKeyState();
syncDoc();
loadHistory();
loadLibrary();
loadDirections();
openFromHash();
