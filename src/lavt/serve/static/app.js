// The lavt page: pick or upload an image, type expressions, see one overlay per
// expression. Plain JavaScript, no build step, nothing fetched but this server
// (relative URLs, so the page also works behind a reverse proxy's path prefix).
"use strict";

// Colours unlike the synthetic scenes' own (red, green, blue, yellow, purple, orange).
const COLOURS = [
  [0, 229, 255], [255, 0, 204], [255, 255, 255], [127, 255, 0],
  [255, 140, 180], [0, 0, 0], [140, 255, 230], [120, 120, 255],
];
const FILL_ALPHA = 130;  // the object's pixels; its outline is opaque
const $ = (id) => document.getElementById(id);
const KEY_STORE = "lavt-api-key";  // sessionStorage: gone when the tab closes
const state = {
  imageBlob: null, imageName: "", bitmap: null, results: [], limits: null,
  apiKey: sessionStorage.getItem(KEY_STORE) || "",
};

// fetch() of this server's API, with the key when one was given; a 401 asks for it.
async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (state.apiKey) headers.set("Authorization", `Bearer ${state.apiKey}`);
  const reply = await fetch(path, { ...options, headers });
  if (reply.status === 401) {
    $("auth").hidden = false;
    const body = await reply.json().catch(() => ({}));
    throw new Error(body.error ? body.error.message : "this server needs an API key");
  }
  return reply;
}

function saveKey() {
  state.apiKey = $("api-key").value.trim();
  sessionStorage.setItem(KEY_STORE, state.apiKey);
  $("api-key").value = "";
  $("auth").hidden = true;
  setStatus("API key set.");
  loadModelLine().catch((err) => setStatus(`Error: ${err.message}`, true));
}

// COCO compressed RLE (pycocotools' string form) -> counts -> (H, W) mask, column-major.
function decodeCounts(s) {
  const counts = [];
  let p = 0;
  while (p < s.length) {
    let x = 0, k = 0, more = 1, c = 0;
    while (more) {
      c = s.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = c & 0x20;
      p++; k++;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

function decodeRle(rle) {
  const [h, w] = rle.size;
  const mask = new Uint8Array(h * w);  // row-major (y * w + x)
  let index = 0, value = 0;
  for (const run of decodeCounts(rle.counts)) {
    for (let i = 0; i < run; i++, index++) {
      if (value) mask[(index % h) * w + Math.floor(index / h)] = 1;
    }
    value = 1 - value;
  }
  return { mask, width: w, height: h };
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "muted";
}

async function showImage(blob, name) {
  state.imageBlob = blob;
  state.imageName = name;
  state.bitmap = await createImageBitmap(blob, { imageOrientation: "from-image" });
  const canvas = $("image-canvas");
  canvas.width = state.bitmap.width;
  canvas.height = state.bitmap.height;
  canvas.getContext("2d").drawImage(state.bitmap, 0, 0);
  clearResults();
}

// after a failed upload nothing of the previous image may stay on screen
function clearImage() {
  state.imageBlob = null;
  state.imageName = "";
  state.bitmap = null;
  const canvas = $("image-canvas");
  canvas.width = 1;
  canvas.height = 1;
  clearResults();
}

function clearResults() {
  document.querySelectorAll(".mask-layer").forEach((el) => el.remove());
  $("legend").innerHTML = "";
  state.results = [];
  window.lavtResults = [];
}

function maskCanvas(decoded, colour) {
  const canvas = document.createElement("canvas");
  canvas.width = decoded.width;
  canvas.height = decoded.height;
  const ctx = canvas.getContext("2d");
  const pixels = ctx.createImageData(decoded.width, decoded.height);
  const { mask, width, height } = decoded;
  const inside = (x, y) => x >= 0 && y >= 0 && x < width && y < height && mask[y * width + x];
  for (let i = 0; i < mask.length; i++) {
    if (!mask[i]) continue;
    const x = i % width, y = Math.floor(i / width);
    const edge = !inside(x - 1, y) || !inside(x + 1, y) || !inside(x, y - 1) || !inside(x, y + 1);
    pixels.data.set([colour[0], colour[1], colour[2], edge ? 255 : FILL_ALPHA], 4 * i);
  }
  ctx.putImageData(pixels, 0, 0);
  return canvas;
}

function maskPngUrl(decoded) {
  const canvas = document.createElement("canvas");
  canvas.width = decoded.width;
  canvas.height = decoded.height;
  const ctx = canvas.getContext("2d");
  const pixels = ctx.createImageData(decoded.width, decoded.height);
  for (let i = 0; i < decoded.mask.length; i++) {
    const v = decoded.mask[i] ? 255 : 0;
    pixels.data.set([v, v, v, 255], 4 * i);
  }
  ctx.putImageData(pixels, 0, 0);
  return canvas.toDataURL("image/png");
}

function legendEntry(result, index, colour, layer, decoded) {
  const item = document.createElement("li");
  const toggle = document.createElement("input");
  toggle.type = "checkbox";
  toggle.checked = true;
  toggle.title = "show or hide this mask";
  toggle.className = "toggle";
  toggle.addEventListener("change", () => layer.classList.toggle("hidden", !toggle.checked));
  const swatch = document.createElement("span");
  swatch.className = "swatch";
  swatch.style.background = `rgb(${colour.join(",")})`;
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = resultLine(result);
  if (result.unknown_words && result.unknown_words.length) {
    const unknown = document.createElement("span");
    unknown.className = "unknown";
    unknown.textContent = `unknown to the model: ${result.unknown_words.join(", ")}`;
    text.append(document.createElement("br"), unknown);
  }
  const link = document.createElement("a");
  link.textContent = "mask PNG";
  link.className = "download";
  link.download = `mask-${index + 1}.png`;
  link.href = maskPngUrl(decoded);
  item.append(toggle, swatch, text, link);
  return item;
}

// "text (score, area)", or "text: no object" when the model says it names none
function resultLine(result) {
  const noTarget = result.no_target_probability === undefined
    ? "" : `, no-object probability ${result.no_target_probability.toFixed(2)}`;
  if (result.found === false) return `${result.text}: no object found${noTarget}`;
  return `${result.text} (score ${result.score.toFixed(2)}, ${result.area} px${noTarget})`;
}

function drawResults(response) {
  clearResults();
  const stage = $("stage");
  response.results.forEach((result, index) => {
    const colour = COLOURS[index % COLOURS.length];
    const decoded = decodeRle(result.rle);
    const layer = maskCanvas(decoded, colour);
    layer.className = "mask-layer";
    layer.dataset.index = String(index);
    layer.dataset.text = result.text;
    stage.append(layer);
    $("legend").append(legendEntry(result, index, colour, layer, decoded));
  });
  state.results = response.results;
  window.lavtResults = response.results;
}

async function segment() {
  const texts = $("texts").value.split("\n").map((t) => t.trim()).filter((t) => t);
  if (!state.imageBlob) return setStatus("Choose an example or upload an image first.", true);
  if (!texts.length) return setStatus("Type at least one expression.", true);
  const limits = state.limits;
  if (limits && texts.length > limits.max_expressions) {
    return setStatus(`At most ${limits.max_expressions} expressions per image.`, true);
  }
  if (limits && state.imageBlob.size > limits.max_upload_mb * 1024 * 1024) {
    // the server refuses such a body before reading it; say so before sending it
    return setStatus(`The image is over the server's ${limits.max_upload_mb} MB limit.`, true);
  }
  const form = new FormData();
  form.append("image", state.imageBlob, state.imageName || "image");
  texts.forEach((t) => form.append("text", t));
  $("segment").disabled = true;
  setStatus("Segmenting…");
  try {
    const reply = await api("v1/segment", { method: "POST", body: form });
    const body = await reply.json();
    if (!reply.ok) throw new Error(body.error ? body.error.message : reply.statusText);
    drawResults(body);
    setStatus(`${body.results.length} mask(s), ${body.width}×${body.height} px, model ${body.model}.`);
    document.body.dataset.state = "done";
  } catch (err) {
    clearResults();  // the masks on screen belong to an earlier request
    setStatus(`Error: ${err.message}`, true);
    document.body.dataset.state = "error";
  } finally {
    $("segment").disabled = false;
  }
}

async function loadExamples() {
  const examples = await (await fetch("static/examples/examples.json")).json();
  for (const example of examples) {
    const option = document.createElement("option");
    option.value = example.file;
    option.textContent = example.title;
    option.dataset.texts = example.texts.join("\n");
    $("example").append(option);
  }
}

async function loadModelLine() {
  const info = await (await api("v1/model")).json();
  state.limits = info.limits;
  $("model-line").textContent =
    `model ${info.name} (${info.architecture.variant}, input ${info.input_size.join("×")}, ` +
    `${info.device}); up to ${info.limits.max_expressions} expressions per image`;
}

$("example").addEventListener("change", async (event) => {
  const option = event.target.selectedOptions[0];
  if (!option.value) return;
  const blob = await (await fetch(`static/examples/${option.value}`)).blob();
  $("texts").value = option.dataset.texts;
  $("upload").value = "";
  await showImage(blob, option.value);
  setStatus("Example loaded: press Segment.");
});

$("upload").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  if (!file) return;
  $("example").value = "";
  try {
    await showImage(file, file.name);
    setStatus("Image loaded: type expressions and press Segment.");
  } catch (err) {
    clearImage();
    setStatus(`Cannot display this file: ${err.message}`, true);
    document.body.dataset.state = "error";
  }
});

$("segment").addEventListener("click", segment);
$("api-key-save").addEventListener("click", saveKey);
window.lavtDecodeRle = decodeRle;
loadExamples().catch((err) => setStatus(`Examples unavailable: ${err.message}`, true));
loadModelLine().catch(() => { $("model-line").textContent = "model information unavailable"; });
