// The console's small behaviours: CSRF on every htmx and fetch call, boards whose cards can be dragged
// (SortableJS), placeholders inserted into the field being edited.
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

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boards);
  else boards();
})();
