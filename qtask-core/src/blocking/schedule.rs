//! Periodic tasks ([`crate::Schedule`]), waited on.

use super::{wait, Client};
use crate::error::Result;
use crate::schedule::{Schedule, ScheduleInfo};

impl Client {
    /// Declares or replaces a periodic task (upsert by name).
    pub fn schedule(&self, schedule: Schedule) -> Result<ScheduleInfo> {
        let c = self.live()?.clone();
        wait(async move { c.schedule(schedule).await })
    }

    /// Removes a schedule; returns whether it existed.
    pub fn unschedule(&self, name: &str) -> Result<bool> {
        let (c, name) = (self.live()?.clone(), name.to_owned());
        wait(async move { c.unschedule(&name).await })
    }

    /// Every schedule of the namespace, by name.
    pub fn schedules(&self) -> Result<Vec<ScheduleInfo>> {
        let c = self.live()?.clone();
        wait(async move { c.schedules().await })
    }
}
