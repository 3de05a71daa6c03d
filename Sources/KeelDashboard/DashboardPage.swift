import Foundation
import KeelCore

/// The dashboard's front page: every run with its status, step and latest loss, the recipe queue, and a
/// drop zone / file form that posts a recipe to `/api/queue` with the token (kept in the browser's
/// localStorage). The page reloads itself every 5 s unless the user is dragging a file over it.
struct DashboardPage {
    let summaries: [RunSummary]
    let queue: [QueuedRecipe]

    init(store: KeelStore) throws {
        summaries = try store.runSummaries(limit: 200)
        queue = try store.queuedRecipes()
    }

    var html: String {
        var out = ["<!DOCTYPE html>", "<html lang=\"en\">", "<head>", "<meta charset=\"utf-8\">", "<title>Keel daemon</title>",
                   "<style>\(RunReportPage.style) #drop { border: 2px dashed #aaa; padding: 18px; margin: 8px 0; max-width: 640px; }"
                   + " #drop.over { border-color: #1f77b4; background: #eef5fb; } #result { white-space: pre-wrap; }</style>",
                   "</head>", "<body>", "<h1>Keel daemon</h1>"]
        out.append("""
            <section id="queue-form"><h2>Queue a recipe</h2>
            <p><label>token <input id="token" type="password" size="70" autocomplete="off"></label>
            <span class="note">(from var/\(DashboardServer.tokenFileName); kept in this browser)</span></p>
            <div id="drop">Drop a recipe (.yaml) here, or choose one: <input id="file" type="file" accept=".yaml,.yml"></div>
            <pre id="result"></pre></section>
            """)
        out.append("<section id=\"runs\"><h2>Runs</h2><table><thead><tr><th>run</th><th>status</th><th>step</th><th>loss</th>"
                   + "<th>recipe</th><th>started (UTC)</th><th></th></tr></thead><tbody>")
        for summary in summaries {
            let run = summary.run, id = HTML.escape(run.id)
            let status = run.observedStatus
            let cancel = status.isFinished && status != .interrupted ? "" : "<button data-cancel=\"\(id)\">cancel</button>"
            out.append("<tr class=\"run-row\" data-run=\"\(id)\"><td><a href=\"/runs/\(id)\">\(id)</a> · <a href=\"/runs/\(id)/log\">log</a>"
                       + " · <a href=\"/runs/\(id)/recipe\">recipe</a></td><td class=\"status\">\(status.rawValue)</td>"
                       + "<td class=\"num\">\(run.currentStep)/\(run.totalSteps.map(String.init) ?? "?")</td>"
                       + "<td class=\"num\">\(summary.latestTrain?.values[TrainMetric.loss].map { String(format: "%.4g", $0) } ?? "")</td>"
                       + "<td>\(HTML.escape(run.recipePath))</td><td>\(RunReportPage.time(run.startedAt))</td><td>\(cancel)</td></tr>")
        }
        out.append("</tbody></table></section>")
        out.append("<section id=\"queue\"><h2>Recipe queue</h2>")
        out.append(RunReportPage.table("queue", ["#", "recipe", "state", "run", "error"], queue.reversed().map { entry in
            "<td class=\"num\">\(entry.id)</td><td>\(HTML.escape(entry.recipePath))</td><td>\(entry.state.rawValue)</td>"
                + "<td>\(HTML.escape(entry.runID ?? ""))</td><td><pre>\(HTML.escape(entry.error ?? ""))</pre></td>"
        }, empty: "Nothing queued yet."))
        out.append("</section>")
        out.append("<script>\(Self.script)</script>")
        out += ["</body>", "</html>"]
        return out.joined(separator: "\n") + "\n"
    }

    static let script = """
        const token = document.getElementById('token');
        const result = document.getElementById('result');
        token.value = localStorage.getItem('keel-token') || '';
        result.textContent = sessionStorage.getItem('keel-result') || '';
        token.addEventListener('input', () => localStorage.setItem('keel-token', token.value));
        function show(text) { result.textContent = text; sessionStorage.setItem('keel-result', text); }
        async function post(url, body) {
          const response = await fetch(url, {method: 'POST', headers: {'Authorization': 'Bearer ' + token.value}, body});
          show(response.status + ' ' + response.statusText + '\\n' + await response.text());
        }
        async function queue(files) {
          for (const file of files) await post('/api/queue?name=' + encodeURIComponent(file.name), await file.text());
        }
        const drop = document.getElementById('drop');
        let dragging = false;
        drop.addEventListener('dragover', e => { e.preventDefault(); dragging = true; drop.classList.add('over'); });
        drop.addEventListener('dragleave', () => { dragging = false; drop.classList.remove('over'); });
        drop.addEventListener('drop', e => { e.preventDefault(); dragging = false; drop.classList.remove('over'); queue(e.dataTransfer.files); });
        document.getElementById('file').addEventListener('change', e => queue(e.target.files));
        for (const button of document.querySelectorAll('button[data-cancel]')) {
          button.addEventListener('click', () => post('/api/runs/' + encodeURIComponent(button.dataset.cancel) + '/cancel', ''));
        }
        setInterval(() => { if (!dragging && document.activeElement !== token) location.reload(); }, 5000);
        """
}
