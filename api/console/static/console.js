// The console's small behaviours: CSRF on every htmx and fetch call, boards whose cards can be dragged
// (SortableJS), placeholders inserted into the field being edited, the delay editor that shows one kind of
// delay at a time, and the condition builder that writes and reads the condition's JSON.
(function () {
  const meta = document.querySelector('meta[name="csrf-token"]');
  const csrf = meta ? meta.content : "";

  document.addEventListener("htmx:configRequest", (event) => { event.detail.headers["X-CSRF-Token"] = csrf; });

  function notice(text) {
    const box = document.getElementById("notice");
    box.textContent = text;
    box.hidden = false;
    setTimeout(() => { box.hidden = true; }, 8000);
  }

  async function post(url, fields) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded", "X-CSRF-Token": csrf },
      body: new URLSearchParams(fields),
      credentials: "same-origin",
    });
    let body = {};
    try { body = await response.json(); } catch (error) { body = { detail: response.statusText }; }
    return { ok: response.ok, body };
  }

  function shown(detail) {
    if (Array.isArray(detail)) return detail.map((problem) => (problem.loc || []).join(".") + ": " + problem.msg).join("; ");
    return String(detail);
  }

  function boards() {
    if (!window.Sortable) return;
    document.querySelectorAll("ol.pieces[data-order-url], ul.pieces[data-order-url]").forEach((list) => {
      Sortable.create(list, {
        animation: 120, forceFallback: true, filter: ".empty", draggable: ".card",
        onEnd: async () => {
          const order = JSON.stringify([...list.querySelectorAll(".card")].map((card) => card.dataset.name));
          const board = list.closest(".board");
          const answer = await post(list.dataset.orderUrl, { order, base_version: board ? board.dataset.version : "" });
          if (!answer.ok) notice("Not saved: " + shown(answer.body.detail));
          window.location.reload();
        },
      });
    });
    document.querySelectorAll("ul.item-list").forEach((list) => {
      Sortable.create(list, {
        group: "items", animation: 120, forceFallback: true, sort: false,
        onAdd: async (event) => {
          const card = event.item;
          const answer = await post(card.dataset.moveUrl, { stage: list.dataset.stage });
          if (!answer.ok || !answer.body.moved) {
            event.from.insertBefore(card, event.from.children[event.oldIndex] || null);
            notice("The move was refused: " + shown(answer.body.detail || "not moved"));
          } else {
            card.classList.add("moved");
          }
          document.querySelectorAll(".items-board .column").forEach((column) => {
            const count = column.querySelector(".count");
            if (count) count.textContent = column.querySelectorAll("li.item").length;
          });
        },
      });
    });
  }

  let lastField = null;
  document.addEventListener("focusin", (event) => {
    if (event.target.matches("input.takes-placeholders, textarea.takes-placeholders")) lastField = event.target;
  });
  document.addEventListener("click", (event) => {
    const button = event.target.closest(".placeholder");
    if (!button || !lastField) return;
    const text = "{{" + button.dataset.path + "}}";
    const start = lastField.selectionStart ?? lastField.value.length;
    const end = lastField.selectionEnd ?? start;
    lastField.value = lastField.value.slice(0, start) + text + lastField.value.slice(end);
    lastField.focus();
    lastField.selectionStart = lastField.selectionEnd = start + text.length;
  });

  function delayEditors() {
    document.querySelectorAll(".delay-editor").forEach((editor) => {
      const kind = editor.querySelector("select.delay-kind");
      const show = () => editor.querySelectorAll(".delay-part").forEach((part) => {
        part.hidden = !part.dataset.delay.split(" ").includes(kind.value);
      });
      kind.addEventListener("change", show);
      show();
    });
  }

  // -- the condition builder: rows of field · operator · value in AND/OR groups -----------------------------------

  const NO_VALUE = ["empty", "not empty"];
  const LIST = ["in", "not in"];

  function element(tag, attributes, children) {
    const node = document.createElement(tag);
    Object.entries(attributes || {}).forEach(([name, value]) => {
      if (name === "text") node.textContent = value; else node.setAttribute(name, value);
    });
    (children || []).forEach((child) => node.appendChild(child));
    return node;
  }

  function scalar(text) {
    const trimmed = text.trim();
    if (/^-?(0|[1-9]\d*)(\.\d+)?$/.test(trimmed)) return Number(trimmed);
    if (trimmed === "true" || trimmed === "false") return trimmed === "true";
    return trimmed;
  }

  function shownValue(value) {
    return value === undefined || value === null ? "" : String(value);
  }

  function isLeaf(node) {
    return node && typeof node === "object" && !Array.isArray(node) && typeof node.field === "string"
      && typeof node.op === "string" && Object.keys(node).every((key) => ["field", "op", "value"].includes(key));
  }

  function isGroup(node) {
    if (!node || typeof node !== "object" || Array.isArray(node)) return false;
    const keys = Object.keys(node);
    return keys.length === 1 && (keys[0] === "all" || keys[0] === "any") && Array.isArray(node[keys[0]])
      && node[keys[0]].every((child) => isLeaf(child) || isGroup(child));
  }

  function conditionBuilder(box) {
    const field = box.closest(".condition-field");
    const json = field.querySelector("textarea.condition-json");
    const fields = JSON.parse(box.dataset.fields);
    const ops = JSON.parse(box.dataset.ops);
    let readable = true;

    function write() {
      if (!readable) return;
      const root = box.querySelector(":scope > .group");
      let condition = root ? readGroup(root) : null;
      if (condition && condition.all && condition.all.length === 1) condition = condition.all[0];
      json.value = condition ? JSON.stringify(condition) : "";
    }

    function readGroup(group) {
      const kind = group.querySelector(":scope > .group-head select").value;
      const items = [...group.querySelector(":scope > .group-items").children]
        .map((child) => (child.classList.contains("group") ? readGroup(child) : readRow(child)))
        .filter((child) => child !== null);
      return items.length ? { [kind]: items } : null;
    }

    function readRow(row) {
      const path = row.querySelector(".c-field").value.trim();
      const op = row.querySelector(".c-op").value;
      const values = [...row.querySelectorAll(".c-value")].map((input) => input.value);
      if (!path && values.every((value) => !value.trim())) return null;
      const leaf = { field: path, op };
      if (NO_VALUE.includes(op)) return leaf;
      if (LIST.includes(op)) leaf.value = values[0].split(",").map((part) => part.trim()).filter((part) => part).map(scalar);
      else if (op === "between") leaf.value = [scalar(values[0]), scalar(values[1] || "")];
      else leaf.value = scalar(values[0]);
      return leaf;
    }

    function valueInputs(row, op, value) {
      const holder = row.querySelector(".c-values");
      holder.replaceChildren();
      if (NO_VALUE.includes(op)) return;
      if (op === "between") {
        const [low, high] = Array.isArray(value) ? value : ["", ""];
        holder.append(
          element("input", { class: "c-value", "aria-label": "from", placeholder: "from", value: shownValue(low) }),
          element("span", { text: "and" }),
          element("input", { class: "c-value", "aria-label": "to", placeholder: "to", value: shownValue(high) }));
        return;
      }
      const shown = Array.isArray(value) ? value.map(shownValue).join(", ") : shownValue(value);
      holder.append(element("input", {
        class: "c-value", "aria-label": "value", value: shown,
        placeholder: LIST.includes(op) ? "EUR, USD (separate with commas)" : "value or {{Constants.Name}}",
      }));
    }

    function row(leaf) {
      const node = element("div", { class: "c-row" });
      const path = element("input", { class: "c-field", list: "condition-fields", "aria-label": "field",
                                       placeholder: fields[0] || "Deal.Amount", value: leaf.field || "" });
      const op = element("select", { class: "c-op", "aria-label": "operator" },
        ops.map(([value, words]) => element("option", { value, text: words })));
      op.value = ops.some(([value]) => value === leaf.op) ? leaf.op : "=";
      const remove = element("button", { type: "button", class: "c-remove", title: "remove this row", text: "×" });
      node.append(path, op, element("span", { class: "c-values" }), remove);
      valueInputs(node, op.value, leaf.value);
      op.addEventListener("change", () => {
        const before = [...node.querySelectorAll(".c-value")].map((input) => input.value);
        valueInputs(node, op.value, op.value === "between" ? before : before.join(", "));
        write();
      });
      remove.addEventListener("click", () => { node.remove(); write(); });
      return node;
    }

    function group(kind, children, nested) {
      const node = element("div", { class: "group" + (nested ? " nested" : "") });
      const select = element("select", { "aria-label": "all or any" }, [
        element("option", { value: "all", text: "all of these hold (AND)" }),
        element("option", { value: "any", text: "any of these holds (OR)" })]);
      select.value = kind;
      select.addEventListener("change", write);
      const head = element("div", { class: "group-head" }, [select]);
      if (nested) {
        const remove = element("button", { type: "button", class: "c-remove", title: "remove this group", text: "×" });
        remove.addEventListener("click", () => { node.remove(); write(); });
        head.append(remove);
      }
      const items = element("div", { class: "group-items" });
      children.forEach((child) => items.append(isGroup(child) ? groupOf(child, true) : row(child)));
      const addRow = element("button", { type: "button", class: "c-add-row", text: "+ condition" });
      addRow.addEventListener("click", () => { items.append(row({ op: "=" })); items.lastChild.querySelector(".c-field").focus(); });
      const addGroup = element("button", { type: "button", class: "c-add-group", text: "+ group" });
      addGroup.addEventListener("click", () => { items.append(group(kind === "all" ? "any" : "all", [{ op: "=" }], true)); });
      node.append(head, items, element("div", { class: "group-foot" }, [addRow, addGroup]));
      return node;
    }

    function groupOf(condition, nested) {
      const kind = Object.keys(condition)[0];
      return group(kind, condition[kind], nested);
    }

    function render() {
      const text = json.value.trim();
      let condition = null;
      try { condition = text ? JSON.parse(text) : null; } catch (error) { condition = undefined; }
      box.replaceChildren();
      if (condition === undefined || (condition !== null && !isLeaf(condition) && !isGroup(condition))) {
        readable = false;
        box.append(element("p", { class: "c-unreadable", text: "This condition cannot be shown as rows; correct it as JSON below." }));
        json.closest("details").open = true;
        return;
      }
      readable = true;
      box.append(condition === null ? group("all", [], false)
        : isLeaf(condition) ? group("all", [condition], false) : groupOf(condition, false));
    }

    box.addEventListener("input", write);
    box.addEventListener("change", write);
    json.addEventListener("input", render);
    render();
  }

  function stageRows() {
    document.querySelectorAll("button.add-stage-row").forEach((button) => {
      button.addEventListener("click", () => {
        const rows = button.closest("fieldset").querySelectorAll(".stage-row");
        const last = rows[rows.length - 1];
        const copy = last.cloneNode(true);
        copy.classList.remove("has-error");
        copy.querySelectorAll("p.error").forEach((error) => error.remove());
        copy.querySelectorAll("input").forEach((input) => { input.value = ""; });
        copy.querySelectorAll("select").forEach((select) => { select.value = "process"; });
        const label = copy.querySelector("label");
        label.firstChild.textContent = "Stage " + (rows.length + 1) + " ";
        last.after(copy);
        copy.querySelector("input").focus();
      });
    });
  }

  function start() {
    boards();
    stageRows();
    delayEditors();
    document.querySelectorAll(".condition-builder").forEach(conditionBuilder);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
