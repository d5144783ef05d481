// cepo's page: ask a question, stream the run's events from POST v1/cepo/runs, and show every branch as
// it grows, grouped by candidate, then the checks, the choice, the answer and the totals per stage.
// Stage headings come from the method's declaration (GET v1/cepo/methods), so a new stage shows as it
// is. Plain DOM and fetch: no build step, nothing loaded from elsewhere. Model text only goes in as text.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY = "cepo-api-key"; // in sessionStorage: the key lasts as long as the tab
const page = {
  key: sessionStorage.getItem(KEY) || "",
  methods: new Map(), // name -> its declaration
  efforts: new Map(), // reasoning_effort -> the method it runs
  effortMethod: "", // the method whose compute an effort sets
  controller: null, // aborts the run in flight
};

class KeyNeeded extends Error {}

async function api(path, init = {}) {
  const headers = { "Content-Type": "application/json" };
  if (page.key) headers.Authorization = `Bearer ${page.key}`;
  const response = await fetch(path, { ...init, headers });
  if (response.status === 401) throw new KeyNeeded("the server needs its API key");
  if (!response.ok) throw new Error(await errorText(response));
  return response;
}

async function errorText(response) {
  try {
    return (await response.json()).error.message;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

function make(tag, className = "", text = "") {
  const element = document.createElement(tag);
  if (className) element.className = className;
  if (text) element.textContent = text;
  return element;
}

function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status").textContent = text;
}

// ------------------------------------------------------------------------------------ methods and key
async function load() {
  fetch("health")
    .then((response) => response.json())
    .then((health) => ($("model").textContent = health.model))
    .catch(() => {});
  try {
    const list = await (await api("v1/cepo/methods")).json();
    page.methods = new Map(list.data.map((method) => [method.name, method]));
    page.efforts = new Map(list.efforts.map((effort) => [effort.name, effort.method]));
    page.effortMethod = list.effort_method;
    $("method").replaceChildren(
      ...list.data.map((method) => option(method.name, method.name, method.summary)),
    );
    $("method").value = page.methods.has(page.effortMethod) ? page.effortMethod : list.data[0].name;
    const efforts = list.efforts.map((effort) => option(effort.name, effort.name, `runs ${effort.method}`));
    $("effort").replaceChildren(option("", "default", "the server's settings"), ...efforts);
    methodChanged();
    $("key-form").hidden = true;
    $("run").disabled = false;
    setStatus("idle", "");
  } catch (error) {
    if (error instanceof KeyNeeded) askForKey();
    else setStatus("error", `cannot reach the server: ${error.message}`);
  }
}

function option(value, text, title) {
  const element = make("option", "", text);
  element.value = value;
  element.title = title;
  return element;
}

function askForKey() {
  $("key-form").hidden = false;
  $("run").disabled = true;
  setStatus("error", page.key ? "That key was refused." : "Enter the server's API key to use it.");
  $("key").focus();
}

function methodChanged() {
  $("effort").disabled = $("method").value !== page.effortMethod; // an effort sets that method's compute
}

// --------------------------------------------------------------------------------------------- a run
class RunView {
  constructor(method) {
    this.method = method;
    this.groups = new Map(); // candidate index, or "run" for the run's own branches -> its group
    this.cards = new Map(); // "stage/candidate/branch" -> a branch's card
    this.tokens = 0;
    this.started = performance.now();
    this.result = null;
    $("view").hidden = false;
    $("candidates").replaceChildren();
    $("run-stages").replaceChildren();
    $("answer-box").hidden = $("totals-box").hidden = true;
  }

  title(stage) {
    return this.method.stage_titles[stage] ?? stage.charAt(0).toUpperCase() + stage.slice(1);
  }

  handle(event) {
    switch (event.type) {
      case "stage_started":
        this.stageChip(event.stage, event.candidate, "…", true);
        break;
      case "stage_ended":
        this.stageChip(event.stage, event.candidate, `${event.seconds.toFixed(1)} s`);
        break;
      case "branch_token":
        this.token(event);
        break;
      case "branch_ended":
        this.branchEnded(event);
        break;
      case "candidate_scored":
        this.group(event.candidate).checks.replaceChildren(describeScore(event));
        break;
      case "candidate_failed":
        this.candidateFailed(event);
        break;
      case "finished":
        this.finished(event.result);
        break;
    }
  }

  group(candidate) {
    const key = candidate ?? "run";
    if (!this.groups.has(key)) {
      const element = make("section", "candidate");
      element.dataset.candidate = key;
      const heading = make("h2", "", candidate === null ? "Run" : `Candidate ${candidate + 1}`);
      const group = {
        element,
        heading,
        stages: make("div", "stages"),
        branches: make("div"),
        checks: make("p", "checks"),
      };
      element.append(heading, group.stages, group.branches, group.checks);
      this.groups.set(key, group);
      // The run's own branches first, then the candidates in order, whatever order they start in.
      const rank = (k) => (k === "run" ? -1 : Number(k));
      const groups = [...$("candidates").children];
      const before = groups.find((other) => rank(other.dataset.candidate) > rank(key));
      $("candidates").insertBefore(element, before ?? null);
    }
    return this.groups.get(key);
  }

  stageChip(stage, candidate, detail, running = false) {
    const holder = candidate === null ? $("run-stages") : this.group(candidate).stages;
    let chip = holder.querySelector(`[data-stage="${CSS.escape(stage)}"]`);
    if (!chip) {
      chip = make("span", "stage");
      chip.dataset.stage = stage;
      chip.dataset.title = this.title(stage);
      holder.append(chip);
    }
    chip.textContent = `${chip.dataset.title} ${detail}`;
    chip.classList.toggle("running", running);
  }

  card(event) {
    const key = `${event.stage}/${event.candidate}/${event.branch}`;
    if (!this.cards.has(key)) {
      const element = make("article", "branch");
      element.dataset.stage = event.stage;
      element.dataset.state = "running";
      const numbered = this.method.numbered_stages.includes(event.stage);
      const title = make("span", "title", this.title(event.stage) + (numbered ? ` ${event.branch + 1}` : ""));
      const state = make("span", "state", "…");
      const header = make("header");
      header.append(title, state);
      const text = make("pre");
      element.append(header, text);
      this.group(event.candidate).branches.append(element);
      this.cards.set(key, { element, state, text, tokens: 0 });
    }
    return this.cards.get(key);
  }

  token(event) {
    const card = this.card(event);
    const atBottom = card.text.scrollTop + card.text.clientHeight >= card.text.scrollHeight - 4;
    card.text.append(event.text);
    if (atBottom) card.text.scrollTop = card.text.scrollHeight; // follow the text, unless scrolled back
    card.tokens += 1; // about one token per event while it runs; exact once it ends
    this.tokens += 1;
    card.state.textContent = `${card.tokens} tok …`;
  }

  branchEnded(event) {
    const card = this.card(event);
    this.tokens += event.tokens - card.tokens;
    card.tokens = event.tokens;
    card.element.dataset.state = event.finish_reason;
    const words = { stop: "", length: "cut at ", cancelled: "cancelled, " };
    card.state.textContent = `${words[event.finish_reason] ?? ""}${event.tokens} tok`;
  }

  candidateFailed(event) {
    const group = this.group(event.candidate);
    group.element.classList.add("failed");
    group.checks.replaceChildren(make("span", "bad", `failed: ${event.error}`));
    this.endRunning(group.element, "failed");
  }

  finished(result) {
    this.result = result;
    const chosen = this.group(result.chosen);
    chosen.element.classList.add("chosen");
    chosen.heading.append(make("span", "badge", "chosen"));
    for (const candidate of result.candidates) {
      const facts = describeChecks(candidate);
      if (facts) this.group(candidate.index).checks.append(make("br"), facts);
    }
    const agreed = result.agreed && result.candidates.length > 1 ? ", every candidate agrees" : "";
    $("answer-of").textContent = `candidate ${result.chosen + 1} of ${result.candidates.length}${agreed}`;
    $("answer").textContent = result.answer.trim();
    $("answer-box").hidden = false;
    const rows = Object.entries(result.stages).map(([stage, usage]) => totalsRow(this.title(stage), usage));
    const total = totalsRow("total", result.usage);
    total.className = "total";
    $("totals").tBodies[0].replaceChildren(...rows, total);
    $("totals-box").hidden = false;
    const generated = result.usage.completion_tokens + result.usage.wasted_tokens;
    setStatus("done", `Done: ${generated} tokens in ${result.seconds.toFixed(1)} s.`);
  }

  progress() {
    if (this.result !== null) return; // finished: the status says so
    const seconds = (performance.now() - this.started) / 1000;
    setStatus("running", `Running ${this.method.name}: ${this.tokens} tokens, ${seconds.toFixed(1)} s`);
  }

  stopped() {
    this.endRunning($("view"), "stopped");
    setStatus("stopped", "Stopped: the run was cancelled.");
  }

  failed(message) {
    this.endRunning($("view"), "failed");
    setStatus("error", `Failed: ${message}`);
  }

  endRunning(within, state) {
    for (const element of within.querySelectorAll('.branch[data-state="running"]')) {
      element.dataset.state = state;
      element.querySelector(".state").textContent = state;
    }
    for (const chip of within.querySelectorAll(".stage.running")) {
      chip.classList.remove("running");
      chip.textContent = `${chip.dataset.title} ${state}`;
    }
  }
}

function describeScore(event) {
  const score = event.score;
  const facts = [event.answer === null ? "no answer found" : `answer ${quote(event.answer)}`];
  if (score.parses !== null) facts.push(score.parses ? "code parses" : "code does not parse");
  if (score.examples_total !== null)
    facts.push(`examples passed ${score.examples_passed}/${score.examples_total}`);
  if (score.votes !== null) facts.push(`votes ${score.votes}`);
  if (score.rating !== null) facts.push(`rating ${score.rating}`);
  if (score.rating_error !== null) facts.push(`rating failed: ${score.rating_error}`);
  return facts.join(" · ");
}

function describeChecks(candidate) {
  const checks = candidate.checks;
  const facts = [];
  if (checks.program_output !== null) facts.push(`program printed ${quote(checks.program_output)}`);
  if (checks.program_error !== null) facts.push(`program failed: ${checks.program_error}`);
  for (const result of checks.examples.filter((example) => !example.passed)) {
    facts.push(`failed ${result.example.input}${result.detail ? `: ${result.detail}` : ""}`);
  }
  return facts.join(" · ");
}

function quote(text) {
  const line = text.replace(/\s+/g, " ").trim();
  return `'${line.length > 80 ? `${line.slice(0, 77)}...` : line}'`;
}

function totalsRow(name, usage) {
  const row = make("tr");
  const cells = [name, usage.requests, usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens];
  cells.push(usage.wasted_tokens, usage.seconds.toFixed(2));
  row.append(...cells.map((value) => make("td", "", String(value))));
  return row;
}

// Server-sent events from a fetch response: {name, data} per event ("message" unless named).
async function* serverEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      yield { name, data: data.join("\n") };
    }
  }
}

async function ask(submit) {
  submit.preventDefault();
  const effort = $("effort").disabled ? "" : $("effort").value;
  const asked = $("method").value;
  const body = { model: asked, messages: [{ role: "user", content: $("question").value }] };
  if (effort) body.reasoning_effort = effort;
  const view = new RunView(page.methods.get(effort ? page.efforts.get(effort) : asked));
  const controller = (page.controller = new AbortController());
  $("run").disabled = true;
  $("stop").disabled = false;
  view.progress();
  const ticker = setInterval(() => view.progress(), 500);
  try {
    const response = await api("v1/cepo/runs", {
      method: "POST",
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    for await (const { name, data } of serverEvents(response)) {
      if (name === "error") throw new Error(JSON.parse(data).error.message);
      view.handle(JSON.parse(data));
    }
    if (view.result === null) throw new Error("the stream ended before the run did");
  } catch (error) {
    if (controller.signal.aborted) view.stopped();
    else if (error instanceof KeyNeeded) askForKey();
    else view.failed(error.message);
  } finally {
    clearInterval(ticker);
    page.controller = null;
    $("run").disabled = !$("key-form").hidden;
    $("stop").disabled = true;
  }
}

$("key-form").addEventListener("submit", (submit) => {
  submit.preventDefault();
  page.key = $("key").value;
  sessionStorage.setItem(KEY, page.key);
  load();
});
$("ask").addEventListener("submit", ask);
$("stop").addEventListener("click", () => page.controller?.abort());
$("method").addEventListener("change", methodChanged);
$("question").addEventListener("keydown", (key) => {
  if (key.key === "Enter" && (key.ctrlKey || key.metaKey)) $("ask").requestSubmit(); // Ctrl-Enter asks
});
load();
