// Bulk decision page: "all" selects every listed item.
document.querySelector("[data-select-all]")?.addEventListener("change", (event) => {
  for (const box of document.querySelectorAll('input[name="items"]')) box.checked = event.target.checked;
});
