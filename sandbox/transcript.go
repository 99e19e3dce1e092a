package sandbox

// Transcript is the stable JSON record of one invocation (SPEC §7).
type Transcript struct {
	Recipe     string     `json:"recipe"`
	Reaction   int        `json:"reaction"`
	Format     string     `json:"format"`
	Mode       string     `json:"mode"`
	Status     Status     `json:"status"`
	Error      *ErrorInfo `json:"error,omitempty"`
	DurationUS int64      `json:"duration_us"`
	Calls      []Call     `json:"calls"`
	Logs       []Log      `json:"logs"`
	Alerts     []Alert    `json:"alerts,omitempty"`
}

// ErrorInfo describes why an invocation did not end well.
type ErrorInfo struct {
	Name    string `json:"name"`
	Message string `json:"message"`
	Stack   string `json:"stack,omitempty"`
}

// Call is one helper call with its arguments as the reaction passed them (coerced to strings)
// and its result.
type Call struct {
	Helper string   `json:"helper"`
	Args   []string `json:"args"`
	Result any      `json:"result"`
	Errno  string   `json:"errno"`
	Denied bool     `json:"denied"`
}

// Log is a line written with Info, Warn or Error.
type Log struct {
	Level string `json:"level"`
	Msg   string `json:"msg"`
}

// Alert is a follow-up event a reaction asked the printers to emit.
type Alert struct {
	Msg        string `json:"msg"`
	Importance string `json:"importance"`
}
