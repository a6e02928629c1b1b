/* skysift review page (src/skysift/review/page.js): plain JavaScript, nothing fetched.
 *
 * - The table sorts by a click on a header (numbers numerically, integer ids exactly as
 *   BigInt, missing values last, ties by rank); the grid follows the table's order.
 * - Grading: keys A B C N grade the current object and move on; j / ArrowRight next,
 *   k / ArrowLeft previous; u or ctrl-z undoes the last grade. A click makes an object
 *   current. Grades, comments and the grader's name are kept in localStorage under the
 *   key of this run and task (meta.storage_key), so a reload loses nothing.
 * - Export writes the grades file (CSV: rank, index, id, grade, grader, comment, timestamp,
 *   task, run) through a Blob link. Ids stay the text the page was written with: they
 *   never pass through a JavaScript number.
 */
(function () {
  "use strict";
  var meta = JSON.parse(document.getElementById("skysift-meta").textContent);
  var table = document.getElementById("candidates");
  var body = table.tBodies[0], grid = document.getElementById("grid");
  var heads = table.tHead.rows[0].cells;
  var COLUMNS = ["rank", "index", "id", "grade", "grader", "comment", "timestamp", "task", "run"];
  var KEYS = { a: "A", b: "B", c: "C", n: "N" };

  // ---------------------------------------------------------------- sortable table
  function value(row, col, type) {
    var v = row.cells[col].getAttribute("data-value");
    if (v === null || v === "") return null;
    if (type === "num") return parseFloat(v);
    if (type === "int") return BigInt(v);
    return v;
  }
  function sortBy(col) {
    var th = heads[col], type = th.getAttribute("data-type");
    var now = th.getAttribute("aria-sort");
    var dir = now === "ascending" ? "descending" : now === "descending" ? "ascending"
      : (th.getAttribute("data-first") || "ascending");
    var sign = dir === "ascending" ? 1 : -1;
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r, s) {
      var a = value(r, col, type), b = value(s, col, type), c = 0;
      if (a === null || b === null) c = (a === null) - (b === null);
      else c = sign * (a < b ? -1 : a > b ? 1 : 0);
      return c || (Number(r.getAttribute("data-rank")) - Number(s.getAttribute("data-rank")));
    });
    rows.forEach(function (row) {
      body.appendChild(row);
      var fig = document.getElementById("c" + row.getAttribute("data-rank"));
      if (fig) grid.appendChild(fig);
    });
    for (var k = 0; k < heads.length; k++) heads[k].setAttribute("aria-sort", "none");
    th.setAttribute("aria-sort", dir);
  }
  Array.prototype.forEach.call(heads, function (th, col) {
    th.addEventListener("click", function () { sortBy(col); });
    th.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); e.stopPropagation(); sortBy(col); }
    });
  });

  // ---------------------------------------------------------------- kept state
  var store = null, warning = document.getElementById("storage-warning");
  try {
    store = window.localStorage;
    store.setItem(meta.storage_key + ":probe", "1");
    store.removeItem(meta.storage_key + ":probe");
  } catch (err) {
    store = null;
    warning.textContent = "This browser keeps nothing for this page (" + err.name +
      "): export before closing it.";
  }
  function load() {
    var text = store && store.getItem(meta.storage_key);
    if (!text) return null;
    try { return JSON.parse(text); } catch (err) { return null; }
  }
  var state = load() || {};
  state.grades = state.grades || {};   // id text -> {grade, comment, timestamp}
  state.history = state.history || []; // [{id, before}] of grades given, for undo
  state.grader = state.grader || "";
  function save() {
    if (!store) return;
    try { store.setItem(meta.storage_key, JSON.stringify(state)); } catch (err) {
      warning.textContent = "Grades could not be kept (" + err.name + "): export now.";
    }
  }

  // ---------------------------------------------------------------- grid and viewer
  var figs = Array.prototype.slice.call(grid.getElementsByTagName("figure"));
  var byId = {};
  figs.forEach(function (f) { byId[f.getAttribute("data-id")] = f; });
  var rowOf = {};
  Array.prototype.forEach.call(body.rows, function (r) { rowOf[r.getAttribute("data-rank")] = r; });
  var current = null;
  var el = function (id) { return document.getElementById(id); };

  function order() { return Array.prototype.slice.call(grid.children); }
  function showGrade(fig) {
    var id = fig.getAttribute("data-id"), g = (state.grades[id] || {}).grade || "";
    fig.className = fig.className.replace(/\s*graded-[ABCN]/g, "") + (g ? " graded-" + g : "");
    var badge = fig.querySelector(".grade");
    badge.textContent = g;
    badge.className = "grade" + (g ? " grade-" + g : "");
    var cell = rowOf[fig.getAttribute("data-rank")].querySelector("td.gradecell");
    cell.setAttribute("data-value", g);
    cell.textContent = g;
  }
  function progress() {
    var n = 0;
    for (var id in state.grades) if (state.grades[id].grade && byId[id]) n++;
    el("progress").textContent = n + " of " + figs.length + " graded";
  }
  function select(fig, scroll) {
    if (!fig) return;
    if (current) current.classList.remove("current");
    current = fig;
    fig.classList.add("current");
    state.current = fig.getAttribute("data-id");
    var img = fig.querySelector("img"), id = state.current;
    el("view-main").src = img.src;
    el("view-deep").src = fig.getAttribute("data-deep");   // made only when shown
    el("view-strip").src = fig.getAttribute("data-strip");
    el("view-title").textContent = "#" + fig.getAttribute("data-rank");
    el("view-id").textContent = id;
    el("view-info").textContent = fig.getAttribute("data-info");
    el("view-known").hidden = fig.getAttribute("data-known") !== "1";
    var g = (state.grades[id] || {}).grade || "";
    el("view-grade").textContent = g || "not graded";
    el("view-grade").className = g ? "grade grade-" + g : "";
    el("comment").value = (state.grades[id] || {}).comment || "";
    if (scroll) fig.scrollIntoView({ block: "nearest" });
  }
  function step(delta) {
    var list = order(), k = list.indexOf(current) + delta;
    if (k >= 0 && k < list.length) select(list[k], true);
  }
  function entry(id) {
    return state.grades[id] || { grade: "", comment: "", timestamp: "" };
  }
  function setEntry(id, e) {
    if (!e.grade && !e.comment) delete state.grades[id]; else state.grades[id] = e;
  }
  function grade(g) {
    if (!current) return;
    var id = current.getAttribute("data-id"), before = state.grades[id] || null;
    var e = entry(id);
    setEntry(id, { grade: g, comment: e.comment, timestamp: new Date().toISOString() });
    state.history.push({ id: id, before: before });
    if (state.history.length > 200) state.history.shift();  // storage is ~5 MB for all pages
    save();
    showGrade(current);
    progress();
    var list = order(), k = list.indexOf(current);
    if (k + 1 < list.length) select(list[k + 1], true); else select(current, false);
  }
  function undo() {
    var last = state.history.pop();
    if (!last) return;
    if (last.before) state.grades[last.id] = last.before; else delete state.grades[last.id];
    save();
    if (byId[last.id]) { showGrade(byId[last.id]); select(byId[last.id], true); }
    progress();
  }

  // ---------------------------------------------------------------- export
  function field(v) {
    v = String(v === undefined || v === null ? "" : v);
    return /[",\r\n]|^\s|\s$/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v;
  }
  function exportText() {
    var lines = [COLUMNS.join(",")];
    order().forEach(function (fig) {
      var id = fig.getAttribute("data-id"), e = state.grades[id];
      if (!e || (!e.grade && !e.comment)) return;
      lines.push([fig.getAttribute("data-rank"), fig.getAttribute("data-index"), id, e.grade,
        state.grader, e.comment, e.timestamp, meta.task, meta.run].map(field).join(","));
    });
    return lines.join("\r\n") + "\r\n";
  }
  function exportName() {
    var who = state.grader.trim().replace(/[^A-Za-z0-9_.-]+/g, "_");
    return meta.task + "_grades_" + (who || "browser") + ".csv";
  }
  function download() {
    var blob = new Blob([exportText()], { type: "text/csv;charset=utf-8" });
    var a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = exportName();
    document.body.appendChild(a);
    a.click();
    setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
    el("export-status").textContent = "exported " + a.download;
  }

  // ---------------------------------------------------------------- events
  document.addEventListener("keydown", function (e) {
    var t = e.target, tag = t && t.tagName;
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || e.altKey || e.metaKey) return;
    var key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    if (e.ctrlKey) {
      if (key === "z") { e.preventDefault(); undo(); }
      return;
    }
    if (KEYS[key]) grade(KEYS[key]);
    else if (key === "j" || key === "ArrowRight") step(1);
    else if (key === "k" || key === "ArrowLeft") step(-1);
    else if (key === "u") undo();
    else return;
    e.preventDefault();
  });
  grid.addEventListener("click", function (e) {
    var fig = e.target.closest("figure");
    if (fig) select(fig, false);
  });
  el("grader").value = state.grader;
  el("grader").addEventListener("input", function () { state.grader = this.value; save(); });
  el("comment").addEventListener("input", function () {
    if (!current) return;
    var id = current.getAttribute("data-id"), e = entry(id);
    setEntry(id, { grade: e.grade, comment: this.value, timestamp: e.timestamp || new Date().toISOString() });
    save();
  });
  el("export").addEventListener("click", download);
  el("undo").addEventListener("click", undo);
  Array.prototype.forEach.call(document.querySelectorAll(".gradebuttons button"), function (b) {
    b.addEventListener("click", function () { grade(b.getAttribute("data-grade")); });
  });

  function padTop() {  // a figure scrolled to stays below the sticky viewer
    document.documentElement.style.scrollPaddingTop = el("viewer").offsetHeight + 8 + "px";
  }
  window.addEventListener("resize", padTop);
  padTop();
  figs.forEach(showGrade);
  progress();
  select(byId[state.current] || figs[0], false);
  // for scripts and tests: the export button's own text, and the key grades are kept under
  window.skysift = { exportText: exportText, exportName: exportName, storageKey: meta.storage_key };
})();
