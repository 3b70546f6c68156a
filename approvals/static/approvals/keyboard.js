// Keyboard for the staff app: j/k move between inbox items, a approve, e edit, r reject,
// o/Enter open the trace, ? help, Esc close. Plain JS on top of the real links and forms,
// so nothing here is needed for the page to work.
(function () {
  "use strict";
  let current = -1;

  function items() {
    return Array.from(document.querySelectorAll("[data-inbox-item]"));
  }

  function typing(target) {
    return target instanceof HTMLElement &&
      (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  }

  function toast(text) {
    const el = document.getElementById("toast");
    if (!el) return;
    el.textContent = text;
    el.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(function () { el.hidden = true; }, 3500);
  }

  function select(index) {
    const list = items();
    if (!list.length) return null;
    current = Math.max(0, Math.min(index, list.length - 1));
    list.forEach(function (el, i) { el.classList.toggle("is-current", i === current); });
    const el = list[current];
    el.focus({ preventScroll: true });
    el.scrollIntoView({ block: "nearest", behavior: "auto" });
    return el;
  }

  function currentItem() {
    const list = items();
    if (!list.length) return null;
    if (current < 0 || current >= list.length) return select(0);
    return list[current];
  }

  function nextPending(from) {
    const list = items();
    for (let i = from + 1; i < list.length; i++) {
      if (!list[i].classList.contains("card-decided")) return i;
    }
    return -1;
  }

  function openPanel(item, name) {
    const panel = item.querySelector('[data-panel="' + name + '"]');
    if (!panel) {
      toast(item.querySelector("[data-money-locked]") ?
        "This one moves money: approving needs the money-approval permission." : "You cannot do that here.");
      return;
    }
    item.querySelectorAll("details[data-panel]").forEach(function (d) { d.open = d === panel; });
    const field = panel.querySelector(name === "edit" ? "textarea" : "input[name=reason]");
    if (field) field.focus();
  }

  document.addEventListener("keydown", function (event) {
    const help = document.getElementById("keyboard-help");
    if (event.key === "Escape") {
      if (help && help.open) return;  // the dialog closes itself
      const open = document.querySelector("[data-inbox-item] details[data-panel][open]");
      if (open) {
        open.open = false;
        const item = open.closest("[data-inbox-item]");
        if (item) item.focus();
        event.preventDefault();
      }
      return;
    }
    if (event.altKey || event.ctrlKey || event.metaKey || typing(event.target)) return;
    if (help && help.open) return;
    if (event.key === "?") {
      if (help) help.showModal();
      event.preventDefault();
      return;
    }
    const list = items();
    if (!list.length) return;
    switch (event.key) {
      case "j": select(current + 1); break;
      case "k": select(current < 0 ? 0 : current - 1); break;
      case "a": {
        const item = currentItem();
        const button = item && item.querySelector('[data-action="approve"]');
        if (button) button.click();
        else if (item && !item.classList.contains("card-decided")) openPanel(item, "approve");
        break;
      }
      case "e": { const item = currentItem(); if (item) openPanel(item, "edit"); break; }
      case "r": { const item = currentItem(); if (item) openPanel(item, "reject"); break; }
      case "o":
      case "Enter": {
        if (event.key === "Enter" && event.target !== currentItem()) return;
        const item = currentItem();
        if (item && item.dataset.traceUrl) window.location.href = item.dataset.traceUrl;
        break;
      }
      default: return;
    }
    event.preventDefault();
  });

  document.addEventListener("click", function (event) {
    const opener = event.target.closest("[data-help-open]");
    if (opener) {
      const help = document.getElementById("keyboard-help");
      if (help) help.showModal();
    }
    const item = event.target.closest("[data-inbox-item]");
    if (item) {
      const index = items().indexOf(item);
      if (index >= 0 && index !== current) {
        current = index;
        items().forEach(function (el, i) { el.classList.toggle("is-current", i === current); });
      }
    }
  });

  // After a decision the card is swapped in place (outerHTML); htmx:load fires on the new card.
  // Keep the place and move on to the next pending item.
  let swapping = "";
  document.addEventListener("htmx:beforeRequest", function (event) {
    const item = event.target.closest && event.target.closest("[data-inbox-item]");
    swapping = item ? item.id : "";
  });
  document.addEventListener("htmx:load", function (event) {
    const el = event.target;
    if (!(el instanceof HTMLElement)) return;
    if (el.id === "inbox-main") {
      current = -1;
      return;
    }
    if (!swapping || el.id !== swapping || !el.matches("[data-inbox-item]")) return;
    swapping = "";
    const index = items().indexOf(el);
    if (index < 0) return;
    const next = el.classList.contains("card-decided") ? nextPending(index) : -1;
    select(next >= 0 ? next : index);
  });
})();
