// Every table of the page sorts by a click (or Enter) on a column's header: a column of numbers by number (a cell
// that starts with one: "62.9-79.1" sorts as 62.9), the cells that hold none ("-", "reference") after them in
// either direction; any other column as text. A cell's data-sort attribute, where present, is what it sorts by
// (seconds for a length shown as m:ss). A header marked data-nosort stays as it is.
"use strict";
(function () {
  const NUMBER = /^\s*[+\-\u2212]?(\d+(\.\d*)?|\.\d+)/;

  function key(cell) {
    const text = (cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent).trim();
    const match = NUMBER.exec(text);
    return { text: text, number: match ? parseFloat(match[0].replace("\u2212", "-")) : null };
  }

  function sortBy(table, column, header) {
    const body = table.tBodies[0];
    const ascending = header.getAttribute("aria-sort") !== "ascending";
    const direction = ascending ? 1 : -1;
    const rows = Array.from(body.rows);
    const keys = new Map(rows.map((row) => [row, key(row.cells[column] || row.insertCell())]));
    const numeric = rows.some((row) => keys.get(row).number !== null);
    rows.sort((a, b) => {
      const x = keys.get(a), y = keys.get(b);
      if (numeric && (x.number === null || y.number === null)) {
        if (x.number === null && y.number === null) return x.text.localeCompare(y.text);
        return x.number === null ? 1 : -1;
      }
      const order = numeric ? x.number - y.number : x.text.localeCompare(y.text, undefined, { numeric: true });
      return direction * order;
    });
    for (const th of table.tHead.rows[0].cells) th.removeAttribute("aria-sort");
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    body.append(...rows);
  }

  function sortable(table) {
    if (!table.tHead || !table.tBodies.length) return;
    Array.from(table.tHead.rows[0].cells).forEach((header, column) => {
      if (header.dataset.nosort !== undefined) return;
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
