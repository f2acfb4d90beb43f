// Bulk decision page: "all" selects every listed item; the preview button says how many are selected.
const boxes = () => document.querySelectorAll('input[name="items"]');
const count = document.querySelector("[data-selected-count]");
const recount = () => {
  if (count) count.textContent = String([...boxes()].filter((box) => box.checked).length);
};
document.querySelector("[data-select-all]")?.addEventListener("change", (event) => {
  for (const box of boxes()) box.checked = event.target.checked;
  recount();
});
for (const box of boxes()) box.addEventListener("change", recount);
recount();
