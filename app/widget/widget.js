// The inference widget: fill-mask via POST fill-mask, sentence similarity via POST embed, and for
// classifiers POST classify and POST token-classification, each card with its own choice among the
// served models (/info's `models`).
// Plain browser JavaScript, no build step and no external resources, so it works offline.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);

  function headers() {
    const h = { "Content-Type": "application/json" };
    const key = $("api-key").value.trim();
    if (key) h["Authorization"] = "Bearer " + key;
    return h;
  }

  // Both error styles the server speaks: {"error": "..."} and {"error": {"message": "..."}}.
  function errorMessage(status, body) {
    if (body && typeof body.error === "string") return body.error;
    if (body && body.error && typeof body.error.message === "string") return body.error.message;
    if (body && body.detail) return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    return "HTTP " + status;
  }

  async function postJSON(path, payload) {
    const response = await fetch(path, { method: "POST", headers: headers(), body: JSON.stringify(payload) });
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      const message = errorMessage(response.status, body);
      if (response.status === 401) {
        $("key-box").open = true;
        throw new Error(message + " (enter the API key above)");
      }
      throw new Error(message);
    }
    return { body: body, totalMs: response.headers.get("x-total-time") };
  }

  function showError(prefix, error) {
    const box = $(prefix + "-error");
    if (error) {
      box.textContent = error.message || String(error);
      box.hidden = false;
    } else {
      box.textContent = "";
      box.hidden = true;
    }
  }

  function showTime(prefix, totalMs) {
    $(prefix + "-time").textContent = totalMs === null || totalMs === undefined ? "" : "Computed in " + totalMs + " ms";
  }

  // Three decimals like the hub widget, but a tiny probability stays readable instead of "0.000".
  function formatScore(score) {
    return score !== 0 && Math.abs(score) < 0.001 ? score.toExponential(1) : score.toFixed(3);
  }

  // One labelled bar; width is the score clamped to [0, 1].
  function barRow(label, score, className) {
    const row = document.createElement("div");
    row.className = "bar-row " + (className || "");
    const name = document.createElement("span");
    name.className = "bar-label";
    name.textContent = label;
    const track = document.createElement("span");
    track.className = "bar-track";
    const fill = document.createElement("span");
    fill.className = "bar-fill";
    fill.style.width = (Math.max(0, Math.min(1, score)) * 100).toFixed(1) + "%";
    track.appendChild(fill);
    const value = document.createElement("span");
    value.className = "bar-score";
    value.textContent = formatScore(score);
    row.append(name, track, value);
    return row;
  }

  // Each card and the task its requests need; its <select> lists the models that serve that task.
  const CARD_TASKS = {
    "fill-mask": "fill-mask",
    similarity: "embed",
    classify: "text-classification",
    tokens: "token-classification",
  };
  // Cards for tasks few servers have: shown only when a model serves them, instead of a "none" note.
  const OPTIONAL_CARDS = new Set(["classify", "tokens"]);
  let models = [];
  let maskToken = "[MASK]";

  function servesTask(model, task) {
    if (!Array.isArray(model.tasks)) return true;  // no task list: let the server decide
    return model.tasks.includes(task) || model.tasks.includes(task.replace("-", "_"));
  }

  function chosenModel(prefix) {
    const id = $(prefix + "-model").value;
    return models.find((model) => model.model_id === id) || null;
  }

  // The request names the chosen model; before /info answers there is none and the server picks.
  function withModel(prefix, payload) {
    const id = $(prefix + "-model").value;
    return id ? Object.assign(payload, { model: id }) : payload;
  }

  // A new mask token replaces the old one in the example text, so the example stays runnable.
  function showMaskToken(mask) {
    if (typeof mask !== "string" || !mask || mask === maskToken) return;
    const input = $("fill-mask-input");
    input.value = input.value.split(maskToken).join(mask);
    $("mask-token").textContent = mask;
    maskToken = mask;
  }

  function applyModel(prefix) {
    const model = chosenModel(prefix);
    $(prefix + "-demo").hidden = !(model && model.demo === true);
    if (prefix === "fill-mask" && model) showMaskToken(model.mask_token);
  }

  function fillModelSelect(prefix, task) {
    const select = $(prefix + "-model");
    const serving = models.filter((model) => servesTask(model, task));
    select.replaceChildren(...serving.map((model) => new Option(model.model_id, model.model_id)));
    // One choice stays visible (it says which model answers) but there is nothing to pick.
    select.disabled = serving.length < 2;
    const none = serving.length === 0;
    select.parentElement.hidden = none;
    if (OPTIONAL_CARDS.has(prefix)) $(prefix + "-card").hidden = none;
    else $(prefix + "-none").hidden = !none;
    $(prefix + "-form").hidden = none;
    $(prefix + "-submit").disabled = none;
    applyModel(prefix);
  }

  function modelChanged(prefix) {
    // Results from the previous model would now be mislabelled.
    $(prefix + "-results").replaceChildren();
    if (prefix === "tokens") $("tokens-text").replaceChildren();
    showTime(prefix, null);
    showError(prefix, null);
    applyModel(prefix);
  }

  async function loadInfo() {
    const summary = $("served-models");
    try {
      const response = await fetch("info");
      if (!response.ok) throw new Error("HTTP " + response.status);
      const info = await response.json();
      models = Array.isArray(info.models) && info.models.length ? info.models : [info];
    } catch (e) {
      summary.textContent = "model info unavailable";
      return;
    }
    const ids = models.map((model) => model.model_id || "unknown model");
    summary.textContent = ids.length === 1 ? ids[0] : ids.length + " models";
    summary.title = ids.join(", ");
    for (const [prefix, task] of Object.entries(CARD_TASKS)) fillModelSelect(prefix, task);
  }

  // Shared by both boxes: `compute` returns {rows, totalMs}; errors land in the box's error line.
  function runner(prefix, compute) {
    return async function (event) {
      event.preventDefault();
      const button = $(prefix + "-submit");
      const results = $(prefix + "-results");
      button.disabled = true;
      showError(prefix, null);
      try {
        const { rows, totalMs } = await compute();
        results.replaceChildren(...rows);
        showTime(prefix, totalMs);
      } catch (e) {
        results.replaceChildren();
        showTime(prefix, null);
        showError(prefix, e);
      } finally {
        button.disabled = false;
      }
    };
  }

  async function fillMask() {
    const payload = {
      inputs: $("fill-mask-input").value,
      parameters: { top_k: parseInt($("fill-mask-top-k").value, 10) },
    };
    const { body, totalMs } = await postJSON("fill-mask", withModel("fill-mask", payload));
    // One mask -> a list of predictions; several masks -> one list per mask.
    const groups = body.length && Array.isArray(body[0]) ? body : [body];
    const rows = [];
    groups.forEach((predictions, index) => {
      if (groups.length > 1) {
        const title = document.createElement("div");
        title.className = "group-title";
        title.textContent = "Mask " + (index + 1);
        rows.push(title);
      }
      predictions.forEach((p) => {
        const row = barRow(p.token_str, p.score, "prediction");
        row.title = p.sequence;
        rows.push(row);
      });
    });
    return { rows, totalMs };
  }

  function dot(a, b) {
    let sum = 0;
    for (let i = 0; i < a.length; i++) sum += a[i] * b[i];
    return sum;
  }

  async function similarity() {
    const source = $("similarity-source").value;
    const sentences = Array.from(document.querySelectorAll(".similarity-sentence"))
      .map((input) => input.value)
      .filter((text) => text.trim() !== "");
    if (!source.trim() || sentences.length === 0) throw new Error("Enter a source sentence and at least one other.");
    // normalize=true makes the dot product the cosine similarity.
    const payload = { inputs: [source].concat(sentences), normalize: true };
    const { body, totalMs } = await postJSON("embed", withModel("similarity", payload));
    const [sourceVector, ...others] = body;
    const rows = others.map((vector, i) => barRow(sentences[i], dot(sourceVector, vector), "similarity"));
    return { rows, totalMs };
  }

  // Every label with its score, best first (top_k null), for a text or a sentence pair.
  async function classify() {
    const text = $("classify-input").value;
    const pair = $("classify-pair").value;
    if (!text.trim()) throw new Error("Enter a text to classify.");
    const inputs = pair.trim() ? { text: text, text_pair: pair } : text;
    const payload = { inputs: inputs, parameters: { top_k: null } };
    const { body, totalMs } = await postJSON("classify", withModel("classify", payload));
    const rows = body.map((entry) => barRow(entry.label, entry.score, "prediction"));
    return { rows, totalMs };
  }

  // The text again, each entity marked with its label (spans are character offsets into the text).
  function markEntities(text, entities) {
    const parts = [];
    let at = 0;
    for (const entity of entities.slice().sort((a, b) => a.start - b.start)) {
      if (entity.start < at) continue;
      if (entity.start > at) parts.push(document.createTextNode(text.slice(at, entity.start)));
      const mark = document.createElement("mark");
      mark.textContent = text.slice(entity.start, entity.end);
      const tag = document.createElement("span");
      tag.className = "entity-tag";
      tag.textContent = entity.entity_group || entity.entity;
      mark.appendChild(tag);
      mark.title = (entity.entity_group || entity.entity) + " " + formatScore(entity.score);
      parts.push(mark);
      at = entity.end;
    }
    parts.push(document.createTextNode(text.slice(at)));
    return parts;
  }

  async function tokens() {
    const text = $("tokens-input").value;
    if (!text.trim()) throw new Error("Enter a text to label.");
    const payload = { inputs: text, parameters: { aggregation_strategy: $("tokens-aggregation").value } };
    $("tokens-text").replaceChildren();
    const { body, totalMs } = await postJSON("token-classification", withModel("tokens", payload));
    $("tokens-text").replaceChildren(...markEntities(text, body));
    const rows = body.map((entity) => barRow(entity.word + " · " + (entity.entity_group || entity.entity), entity.score, "entity"));
    if (rows.length === 0) {
      const none = document.createElement("p");
      none.className = "note";
      none.textContent = "No entities found.";
      rows.push(none);
    }
    return { rows, totalMs };
  }

  function addSentence() {
    const input = document.createElement("input");
    input.type = "text";
    input.className = "similarity-sentence";
    input.setAttribute("aria-labelledby", "similarity-sentences-label");
    input.placeholder = "Another sentence";
    $("similarity-sentences").appendChild(input);
    input.focus();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("fill-mask-form").addEventListener("submit", runner("fill-mask", fillMask));
    $("similarity-form").addEventListener("submit", runner("similarity", similarity));
    $("similarity-add").addEventListener("click", addSentence);
    $("classify-form").addEventListener("submit", runner("classify", classify));
    $("tokens-form").addEventListener("submit", runner("tokens", tokens));
    for (const prefix of Object.keys(CARD_TASKS)) {
      $(prefix + "-model").addEventListener("change", () => modelChanged(prefix));
    }
    loadInfo();
  });
})();
