// Times in the viewer's time zone, with the zone named; the date filters read in that zone too.
(function () {
  "use strict";
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
  const pad = (n) => String(n).padStart(2, "0");
  const local = (d) =>
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  const named = (d) => {
    const part = new Intl.DateTimeFormat(undefined, { timeZoneName: "short" })
      .formatToParts(d)
      .find((p) => p.type === "timeZoneName");
    return part ? part.value : zone;
  };
  for (const el of document.querySelectorAll("time[datetime]")) {
    const d = new Date(el.getAttribute("datetime"));
    if (!Number.isNaN(d.getTime())) {
      el.textContent = `${local(d)} ${named(d)}`;
      el.title = zone;
    }
  }
  for (const label of document.querySelectorAll("[data-zone]")) {
    label.textContent = label.dataset.zone.replace("{zone}", zone);
  }
  for (const form of document.querySelectorAll("form[data-local-since]")) {
    const shown = form.querySelector("input[name=since_local]");
    const sent = form.querySelector("input[name=since]");
    if (sent.value) {
      const d = new Date(sent.value);
      if (!Number.isNaN(d.getTime())) shown.value = local(d).replace(" ", "T").slice(0, 16);
    }
    form.addEventListener("submit", () => {
      const d = shown.value ? new Date(shown.value) : null; // a datetime-local value is the viewer's time
      sent.value = d && !Number.isNaN(d.getTime()) ? d.toISOString() : "";
      shown.disabled = true; // only the UTC time goes to the server
    });
  }
})();
