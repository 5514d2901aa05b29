// Every table of the page sorts by a click (or Enter) on a column's header: numbers as numbers, text as text.
// A cell's data-sort attribute, where present, is what it sorts by (seconds for a length shown as m:ss).
"use strict";
(function () {
  function key(cell) {
    const text = (cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent).trim();
    const number = parseFloat(text.replace(/^[^\d+\-.]*/, ""));
    return { text: text, number: number };
  }

  function sortBy(table, column, header) {
    const body = table.tBodies[0];
    const ascending = header.getAttribute("aria-sort") !== "ascending";
    const rows = Array.from(body.rows);
    const keys = new Map(rows.map((row) => [row, key(row.cells[column] || row.insertCell())]));
    const numeric = rows.every((row) => !Number.isNaN(keys.get(row).number));
    rows.sort((a, b) => {
      const x = keys.get(a), y = keys.get(b);
      const order = numeric ? x.number - y.number : x.text.localeCompare(y.text, undefined, { numeric: true });
      return ascending ? order : -order;
    });
    for (const th of table.tHead.rows[0].cells) th.removeAttribute("aria-sort");
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    body.append(...rows);
  }

  function sortable(table) {
    if (!table.tHead || !table.tBodies.length) return;
    Array.from(table.tHead.rows[0].cells).forEach((header, column) => {
      const button = document.createElement("button");
      button.type = "button";
      button.title = "Sort by this column";
      button.append(...header.childNodes);
      header.append(button);
      button.addEventListener("click", () => sortBy(table, column, header));
    });
  }

  document.querySelectorAll("table").forEach(sortable);
})();
