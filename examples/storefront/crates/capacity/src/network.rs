//! A queueing network: the machines a request visits, each with its service
//! demand, and the customers' think time between requests.

use std::error::Error;
use std::fmt;

/// A setting the model cannot work with, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelError(String);

impl ModelError {
    pub(crate) fn new(what: impl Into<String>) -> Self {
        Self(what.into())
    }
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for ModelError {}

/// How a station serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A machine with `servers` cores: requests beyond them wait.
    Queue {
        /// Cores (servers), at least one.
        servers: u32,
    },
    /// Time spent without contention (a network hop, a sleep).
    Delay,
}

/// One station: a machine (or a pure delay) and the service a request asks of
/// it, in seconds, over all its visits there (the *service demand*: visits
/// times the time per visit).
#[derive(Clone, Debug, PartialEq)]
pub struct Station {
    /// What it is, for reports ("app 2", "PostgreSQL primary").
    pub name: String,
    /// Queue or delay.
    pub kind: Kind,
    /// Seconds of service per request.
    pub demand: f64,
}

impl Station {
    /// Cores, or `None` for a delay.
    pub fn servers(&self) -> Option<u32> {
        match self.kind {
            Kind::Queue { servers } => Some(servers),
            Kind::Delay => None,
        }
    }

    /// The demand per core: what limits throughput at this station (a station
    /// with `c` cores serves at most `c / demand` requests a second).
    pub fn demand_per_server(&self) -> f64 {
        match self.kind {
            Kind::Queue { servers } => self.demand / f64::from(servers),
            Kind::Delay => 0.0,
        }
    }
}

/// A closed network: customers cycle between thinking (`think_time`) and one
/// request that visits every station.
///
/// ```
/// use storefront_capacity::Network;
/// let net = Network::new(5.0)?
///     .queue("app", 0.002, 2)?
///     .queue("db", 0.003, 1)?;
/// assert_eq!(net.bottleneck().map(|s| s.name.as_str()), Some("db"));
/// assert_eq!(net.total_demand(), 0.005);
/// # Ok::<(), storefront_capacity::ModelError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    stations: Vec<Station>,
    think: f64,
}

fn check_seconds(what: &str, value: f64) -> Result<(), ModelError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(ModelError::new(format!(
            "{what}: {value} is not a time in seconds (finite, zero or more)"
        )))
    }
}

impl Network {
    /// An empty network whose customers think `think_time` seconds between
    /// requests.
    pub fn new(think_time: f64) -> Result<Self, ModelError> {
        check_seconds("think time", think_time)?;
        Ok(Self {
            stations: Vec::new(),
            think: think_time,
        })
    }

    /// Adds a machine with `servers` cores and `demand` seconds of service per
    /// request.
    pub fn queue(
        mut self,
        name: impl Into<String>,
        demand: f64,
        servers: u32,
    ) -> Result<Self, ModelError> {
        let name = name.into();
        check_seconds(&format!("demand of {name}"), demand)?;
        if servers == 0 {
            return Err(ModelError::new(format!(
                "{name}: a machine needs at least one core"
            )));
        }
        self.stations.push(Station {
            name,
            kind: Kind::Queue { servers },
            demand,
        });
        Ok(self)
    }

    /// Adds a delay of `demand` seconds per request.
    pub fn delay(mut self, name: impl Into<String>, demand: f64) -> Result<Self, ModelError> {
        let name = name.into();
        check_seconds(&format!("delay {name}"), demand)?;
        self.stations.push(Station {
            name,
            kind: Kind::Delay,
            demand,
        });
        Ok(self)
    }

    /// The stations, in the order they were added.
    pub fn stations(&self) -> &[Station] {
        &self.stations
    }

    /// Seconds a customer thinks between requests.
    pub fn think_time(&self) -> f64 {
        self.think
    }

    /// Seconds of service a request asks of all stations together: its
    /// response time with no one else around.
    pub fn total_demand(&self) -> f64 {
        self.stations.iter().map(|s| s.demand).sum()
    }

    /// The station with the highest demand per core: the one that saturates
    /// first (`None` without queueing stations).
    pub fn bottleneck(&self) -> Option<&Station> {
        self.stations
            .iter()
            .filter(|s| s.servers().is_some())
            .max_by(|a, b| a.demand_per_server().total_cmp(&b.demand_per_server()))
    }

    /// The most requests a second the network can serve: the bottleneck's
    /// cores over its demand (infinite without a queueing demand).
    pub fn max_throughput(&self) -> f64 {
        match self.bottleneck().map(Station::demand_per_server) {
            Some(d) if d > 0.0 => 1.0 / d,
            _ => f64::INFINITY,
        }
    }

    /// The asymptotic bounds on throughput with `users` customers:
    /// `min(users / (total demand + think time), max_throughput)`.
    ///
    /// ```
    /// use storefront_capacity::Network;
    /// let net = Network::new(1.0)?.queue("cpu", 0.5, 1)?;
    /// assert_eq!(net.throughput_bound(1.0), 1.0 / 1.5); // alone: one request per 1.5 s
    /// assert_eq!(net.throughput_bound(100.0), 2.0); // the CPU's limit
    /// # Ok::<(), storefront_capacity::ModelError>(())
    /// ```
    pub fn throughput_bound(&self, users: f64) -> f64 {
        let alone = self.total_demand() + self.think;
        let by_users = if alone > 0.0 {
            users / alone
        } else {
            f64::INFINITY
        };
        by_users.min(self.max_throughput())
    }
}
