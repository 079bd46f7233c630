package subjects

// The control service: every worker registers a NATS micro service named
// ControlService, so `nats micro ls` lists the fleet. Its endpoints are
// addressed per instance (the micro instance id is the last token), so an
// operator reaches one worker, and fleet-wide commands go to each in turn.
// Grant ControlPrefix+">" to operators only: pause stops a server's calls.
const (
	// ControlService is the micro service name.
	ControlService = "toolbus"
	// ControlPrefix prefixes the control endpoints' subjects.
	ControlPrefix = "toolbus.control."
)

// ControlStatus is the status endpoint of the worker with micro instance
// id: toolbus.control.status.<id>.
func ControlStatus(id string) string { return ControlPrefix + "status." + id }

// ControlPause is the pause endpoint: toolbus.control.pause.<id>. The body
// is a ControlServerRequest.
func ControlPause(id string) string { return ControlPrefix + "pause." + id }

// ControlResume is the resume endpoint: toolbus.control.resume.<id>.
func ControlResume(id string) string { return ControlPrefix + "resume." + id }

// ControlServerRequest names the server to pause or resume.
type ControlServerRequest struct {
	Server string `json:"server"`
}

// WorkerStatus is what a worker's status endpoint answers.
type WorkerStatus struct {
	// Name is the worker's name (worker.Config.Name).
	Name string `json:"name"`
	// ID is the micro instance id; the control subjects end with it.
	ID string `json:"id"`
	// InFlight is the number of calls the worker is running.
	InFlight int `json:"in_flight"`
	// Paused lists the servers whose calls this worker does not take.
	Paused  []string             `json:"paused,omitempty"`
	Servers []WorkerServerStatus `json:"servers,omitempty"`
}

// WorkerServerStatus is one MCP server as one worker's pool sees it.
type WorkerServerStatus struct {
	Server   string `json:"server"`
	Sessions int    `json:"sessions"`
	// Breaker is the circuit breaker state: closed, open or half_open.
	Breaker  string `json:"breaker,omitempty"`
	InFlight int    `json:"in_flight"`
	Paused   bool   `json:"paused,omitempty"`
}
